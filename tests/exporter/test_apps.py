"""One exporter following several Celery apps on several brokers (FLEETOPS_APPS): two real
Redis servers and a real RabbitMQ, each with a real worker, behind one exporter process.

The fleet is started once for the module (each worker costs seconds of CPU): the tests run in
file order, and the last one stops a Redis and starts it again. Redis Sentinel is checked at
unit level only: neither the workers nor the readers here are given Sentinel's ``master_name``
transport option, and a Sentinel group costs three more servers (docs/exporter.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from celery import Celery

from exporters.metrics.app import Exporter
from exporters.metrics.apps import Exporters, merge_families
from exporters.metrics.settings import load
from fleetops.errors import ConfigError
from tests import rabbitmq
from tests.dashboards.prometheus_server import PrometheusServer
from tests.exporter.process import (
    ExporterProcess,
    Samples,
    parse,
    promtool_accepts,
    run_exporter,
    total,
)
from tests.helpers import wait_for
from tests.processes import Processes, processes_in
from tests.servers import CeleryProcess, RedisServer, run_worker
from workers.client import client_app

pytestmark = pytest.mark.slow

APPS = ("alpha", "beta", "rabbit")


@dataclass
class Fleet:
    exporter: ExporterProcess
    redis: dict[str, RedisServer]
    workers: dict[str, CeleryProcess]
    clients: dict[str, Celery]
    prometheus: PrometheusServer

    def send(self, app: str, count: int) -> None:
        for _ in range(count):
            self.clients[app].send_task(
                "maintenance.probe", kwargs={"duration": 0.0}, queue="maintenance"
            )

    def succeeded(self, app: str) -> float:
        return total(self.exporter.metrics(), "celery_task_succeeded_total", app=app)

    def healthz(self) -> tuple[int, str]:
        answer = httpx.get(f"{self.exporter.url}/healthz", timeout=10)
        return answer.status_code, answer.text


def _worker_env(url: str, data: Path) -> dict[str, str]:
    data.mkdir(parents=True, exist_ok=True)
    return {
        "FLEETOPS_BROKER_URL": url,
        "FLEETOPS_DATA_DIR": str(data),
        "FLEETOPS_DATABASE_URL": f"sqlite:///{data / 'fleetops.db'}",
        "FLEETOPS_TELEMETRY_INTERVAL": "1",
    }


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, rabbitmq_node: rabbitmq.RabbitMQServer
) -> Iterator[Fleet]:
    stack = ExitStack()
    run_dir = tmp_path_factory.mktemp("apps")
    # A virtual host of its own on the session's RabbitMQ node (tests/conftest.py).
    vhost = stack.enter_context(rabbitmq_node.vhost())
    rabbit_url = vhost.url
    clients: dict[str, Celery] = {}
    try:
        with processes_in(run_dir) as processes:
            redis = {app: RedisServer(processes).start() for app in ("alpha", "beta")}
            urls = {"alpha": redis["alpha"].url, "beta": redis["beta"].url, "rabbit": rabbit_url}
            # The cheapest workers: one solo process each, started side by side.
            workers = {
                app: run_worker(processes, f"{app}-worker@127.0.0.1", "maintenance",
                                _worker_env(url, run_dir / app), concurrency=1, pool="solo",
                                wait=False)
                for app, url in urls.items()
            }  # fmt: skip
            exporter = _exporter(processes, urls)
            prometheus = PrometheusServer(processes, {"exporter": f"127.0.0.1:{exporter.port}"})
            prometheus.start()
            for worker in workers.values():
                worker.child.wait_ready()
            clients = {app: client_app(url) for app, url in urls.items()}
            yield Fleet(exporter, redis, workers, clients, prometheus)
    finally:
        for client in clients.values():
            client.close()
        stack.close()


def _exporter(processes: Processes, urls: dict[str, str]) -> ExporterProcess:
    apps = ",".join(f"{app}={url}" for app, url in urls.items())
    # The fleet's own argv names a broker URL: FLEETOPS_APPS wins over it.
    return run_exporter(processes, urls["alpha"], env={"FLEETOPS_APPS": apps})


def _families_once(text: str) -> None:
    """Each family's HELP and TYPE exactly once, and no series twice: what the exposition
    format requires (prometheus_client's parser lets both through)."""
    helps = [line.split(" ")[2] for line in text.splitlines() if line.startswith("# HELP ")]
    types = [line.split(" ")[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(helps) == len(set(helps)) and len(types) == len(set(types))
    assert sorted(helps) == sorted(types)
    series = [line.rsplit(" ", 1)[0] for line in text.splitlines() if line[:1].isalpha()]
    assert len(series) == len(set(series))


def _apps_of(samples: Samples, name: str) -> set[str]:
    return {dict(labels).get("app", "") for n, labels in samples if n == name}


def test_each_app_counts_only_its_own_tasks(fleet: Fleet) -> None:
    sent = {"alpha": 2, "beta": 3, "rabbit": 1}
    for app, count in sent.items():
        fleet.send(app, count)
    for app, count in sent.items():
        wait_for(lambda app=app, count=count: fleet.succeeded(app) == count, timeout=60,
                 message=f"{count} tasks of {app} counted")  # fmt: skip
    text = fleet.exporter.metrics_text()
    samples = parse(text)
    for app, count in sent.items():
        worker = fleet.workers[app].hostname
        succeeded = {
            dict(labels)["hostname"]: v
            for (n, labels), v in samples.items()
            if n == "celery_task_succeeded_total" and ("app", app) in labels
        }
        assert succeeded == {worker: count}, (app, succeeded)
        assert total(samples, "celery_task_sent_total", app=app) == count
        assert total(samples, "fleetops_exporter_broker_up", app=app) == 1
    # Every series says its app, the exporter's own included, and nothing else is there.
    assert all(dict(labels).get("app") in APPS for _name, labels in samples), "unlabelled"
    assert _apps_of(samples, "fleetops_exporter_stalled") == set(APPS)
    assert _apps_of(samples, "fleetops_exporter_events_rejected_total") <= set(APPS)
    _families_once(text)
    promtool_accepts(text)
    assert fleet.healthz() == (200, "ok\n")
    # A real Prometheus takes the scrape whole, and tells the apps apart.
    query = fleet.prometheus.query

    def scraped() -> dict[str, float]:
        found = query('sum by (app) (celery_task_succeeded_total{job="exporter"})')
        return {r["metric"]["app"]: float(r["value"][1]) for r in found}

    wait_for(lambda: scraped() == sent, timeout=30, message="Prometheus has every app's count")
    assert float(query('up{job="exporter"}')[0]["value"][1]) == 1


def test_a_stopped_broker_fails_healthz_naming_its_app_while_the_others_count_on(
    fleet: Fleet,
) -> None:
    before = {app: fleet.succeeded(app) for app in APPS}
    fleet.redis["beta"].stop()
    try:
        _code, text = wait_for(lambda: (h := fleet.healthz())[0] == 503 and h, timeout=30,
                              message="/healthz fails")  # fmt: skip
        assert "app beta:" in text and "app alpha" not in text and "app rabbit" not in text
        samples = fleet.exporter.metrics()
        assert total(samples, "fleetops_exporter_broker_up", app="beta") == 0
        assert total(samples, "fleetops_exporter_broker_up", app="alpha") == 1
        # The other apps go on: their tasks are counted while beta's broker is away.
        fleet.send("alpha", 2)
        fleet.send("rabbit", 2)
        for app in ("alpha", "rabbit"):
            wait_for(lambda app=app: fleet.succeeded(app) == before[app] + 2, timeout=60,
                     message=f"{app} counts on")  # fmt: skip
        assert fleet.succeeded("beta") == before["beta"]  # kept, not dropped
    finally:
        fleet.redis["beta"].start()
    wait_for(lambda: fleet.healthz()[0] == 200, timeout=60, message="healthy once beta is back")


# ---- unit level: no broker is ever contacted --------------------------------------------------


def test_sentinel_and_amqp_apps_get_their_own_pipelines_and_one_valid_exposition() -> None:
    exporters = Exporters(
        load(
            apps="cache=redis://127.0.0.1:1/0,ha=sentinel://127.0.0.1:1;sentinel://127.0.0.1:2,"
            "mq=amqp://guest:guest@127.0.0.1:1//"
        )
    )
    assert exporters.app_names == ["cache", "ha", "mq"]
    readers = {p.app.name: type(p.stream.reader).__name__ for p in exporters.pipelines}
    assert readers == {"cache": "RedisEventReader", "ha": "KombuEventReader",
                       "mq": "KombuEventReader"}  # fmt: skip
    pollers = {p.app.name: type(p.poller).__name__ for p in exporters.pipelines}
    assert pollers == {"cache": "RedisPoller", "ha": "KombuPoller", "mq": "KombuPoller"}
    assert len({id(p.lock) for p in exporters.pipelines}) == 3
    text = exporters.render().decode()
    _families_once(text)
    promtool_accepts(text)
    samples = parse(text)
    assert _apps_of(samples, "fleetops_exporter_broker_up") == {"cache", "ha", "mq"}
    assert _apps_of(samples, "fleetops_breaking_point") == {"cache", "ha", "mq"}
    healthy, reason = exporters.health()
    assert not healthy and all(f"app {a}:" in reason for a in exporters.app_names)
    # Only some families (as prometheus_client's ?name[]= asks): still each once, every app.
    only = parse(exporters.render(frozenset({"fleetops_exporter_broker_up"})).decode())
    assert {n for n, _labels in only} == {"fleetops_exporter_broker_up"}
    assert _apps_of(only, "fleetops_exporter_broker_up") == {"cache", "ha", "mq"}


def test_one_app_is_served_as_before_with_its_app_label() -> None:
    exporters = Exporters(load(broker_url="redis://127.0.0.1:1/0"))
    assert exporters.app_names == ["default"]
    samples = parse(exporters.render().decode())
    assert samples and all(("app", "default") in labels for _name, labels in samples)
    named = Exporter(load(broker_url="redis://127.0.0.1:1/0", app_name="shop"))
    assert _apps_of(parse(named.render().decode()), "fleetops_exporter_series") == {"shop"}


def test_merging_keeps_samples_that_share_a_part_with_their_header() -> None:
    first = ["# HELP a x\n# TYPE a gauge\n", 'a{app="1"} 1\n']
    second = ['# HELP a x\n# TYPE a gauge\na{app="2"} 2\n', "# HELP b y\n# TYPE b gauge\n"]
    assert merge_families([first, second]) == (
        '# HELP a x\n# TYPE a gauge\na{app="1"} 1\na{app="2"} 2\n# HELP b y\n# TYPE b gauge\n'
    )


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"apps": "a=redis://h/0,a=redis://h/1"}, "given twice"),
        ({"apps": "a b=redis://h/0"}, "not an app name"),
        ({"apps": "a=kafka://u:s3cret@h"}, "unsupported scheme"),
        ({"apps": "a=redis://:s3cret@h/0,b=redis://:s3cret@h/0"}, "same broker URL"),
        # One broker written two ways is still one broker.
        ({"apps": "a=redis://h/0,b=redis://:s3cret@H:6379"}, "same broker URL"),
        ({"apps": "a=amqp://h//,b=pyamqp://u:s3cret@h:5672/%2F"}, "same broker URL"),
        ({"apps": "redis://:s3cret@h/0"}, "expected name=broker-url"),
        # A password holds what a list's separators are: neither may show it.
        ({"apps": "a=redis://:s3c;ret@h/0,b!=redis://h2/0"}, "entry 2: not an app name"),
        ({"apps": "a=redis://:s3c}r e;t@h/0,a=redis://h/1"}, "given twice"),
        ({"apps": "redis://:" + "x" * 80 + "s3cret@h/0"}, "entry 1: expected name"),
        ({"apps": "a=redis:/:s3cret@h/0"}, "unsupported scheme"),
        ({"apps": '{"a": "redis://:s3c\\"ret@h/0", "b c": "redis://h"}'}, "not an app name"),
        ({"apps": '{"a": 3}'}, "non-empty string"),
        ({"apps": '{"a": '}, "not a JSON object"),
        ({"apps": ",".join(f"a{i}=redis://h/{i}" for i in range(65))}, "at most 64"),
        ({"exporter_static_labels": {"app": "x"}}, "sets itself"),
    ],
)
def test_bad_apps_are_refused_naming_the_variable_and_never_a_password(
    overrides: dict[str, object], says: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        load(**overrides)
    message = str(refused.value)
    variable = "EXPORTER_STATIC_LABELS" if "exporter_static_labels" in overrides else "APPS"
    assert f"FLEETOPS_{variable}" in message and says in message
    assert "s3c" not in message


def test_the_help_documents_several_apps() -> None:
    import typer

    from exporters.metrics import cli

    app = typer.Typer(add_completion=False)
    cli.register(app)
    helps = {
        option: " ".join((param.help or "").split())
        for param in typer.main.get_command(app).params
        for option in getattr(param, "opts", [])
    }
    assert "name=broker-url pairs" in helps["--apps"] and "$FLEETOPS_APPS" in helps["--apps"]
    assert "`app` label" in helps["--app-name"] and "$FLEETOPS_APP_NAME" in helps["--app-name"]


def test_apps_on_different_databases_ports_or_hosts_are_told_apart() -> None:
    settings = load(apps="a=redis://h/0,b=redis://h/1,c=redis://h:6380/0,d=redis://g/0")
    assert [app.name for app in settings.effective_apps] == ["a", "b", "c", "d"]


class _TimedWaits:
    """A real lock or thread whose waits are recorded: what each wait was allowed, summed,
    tells whether the apps share one deadline, without timing the test."""

    def __init__(self, real: object, allowed: list[float]) -> None:
        self.real, self.allowed = real, allowed

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        self.allowed.append(timeout)
        return self.real.acquire(blocking, timeout)  # type: ignore[attr-defined]

    def release(self) -> None:
        self.real.release()  # type: ignore[attr-defined]

    def join(self, timeout: float | None = None) -> None:
        self.allowed.append(timeout or 0.0)
        self.real.join(timeout)  # type: ignore[attr-defined]

    def is_alive(self) -> bool:
        return self.real.is_alive()  # type: ignore[attr-defined]


def test_stuck_apps_share_one_deadline_to_render_and_to_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    from exporters.metrics import app as app_module
    from exporters.metrics import apps as apps_module

    budget, floor = 0.05, 0.01
    monkeypatch.setattr(apps_module, "RENDER_LOCK_TIMEOUT", budget)
    monkeypatch.setattr(app_module, "RENDER_LOCK_FLOOR", floor)
    monkeypatch.setattr(apps_module, "STOP_TIMEOUT", budget)
    urls = ",".join(f"a{i}=redis://127.0.0.1:1/{i}" for i in range(4))
    exporters = Exporters(load(apps=urls))
    allowed: list[float] = []
    stuck = threading.Event()
    for pipeline in exporters.pipelines:  # four frozen appliers, each holding its lock
        pipeline.lock.acquire()
        pipeline.lock = _TimedWaits(pipeline.lock, allowed)  # type: ignore[assignment]
    samples = parse(exporters.render().decode())
    assert _apps_of(samples, "fleetops_exporter_stalled") == {"a0", "a1", "a2", "a3"}
    # One deadline in all, and yet every app, the last too, waits its floor: an app behind a
    # stuck one is not starved of its own lock.
    assert len(allowed) == 4 and sum(allowed) <= budget * 1.5 + 4 * floor, allowed
    assert min(allowed) >= floor, allowed

    allowed.clear()
    for pipeline in exporters.pipelines:  # four pollers that never end
        thread = threading.Thread(target=stuck.wait, daemon=True)
        thread.start()
        pipeline._poller_thread = _TimedWaits(thread, allowed)  # type: ignore[assignment]
    try:
        exporters.stop()
    finally:
        stuck.set()
    assert len(allowed) == 4 and sum(allowed) <= budget * 1.5, allowed
