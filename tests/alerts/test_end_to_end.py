"""End to end with real processes: a backlog in Redis pages through Prometheus and Alertmanager.

redis-server -> `fleetops exporter` and Flower -> Prometheus (1 s scrape and evaluation, rules
rendered from a breaking points file with lowered thresholds) -> Alertmanager (1 s group_wait)
-> `fleetops pager`. Tasks go to a queue no worker consumes until the queue is past the critical
depth; the page must arrive with a runbook link that resolves to the runbook file. A Celery
worker is then started on the queue, drains it, and the page must resolve. The time from
crossing the threshold to the page, and from the worker's start to the resolution, are printed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml

from alerts.fleet import alertmanager_spec, host_port, pager_spec, prometheus_spec
from alerts.stack import StackPorts, render_stack
from fleetops import breaking_points
from fleetops.fleet.spec import free_port
from tests.alerts.conftest import ALERTS_DIR, REPO, RUNBOOKS_DIR
from tests.exporter.process import fleet_exporters, run_exporter
from tests.helpers import wait_for
from tests.processes import Processes
from tests.servers import CeleryProcess, RedisServer
from workers.client import client_app

pytestmark = pytest.mark.slow

QUEUE = "maintenance"
TASK = "maintenance.probe"
ALERT = "CeleryQueueDepthCritical"
CRITICAL_DEPTH = 10
HOLD = "3s"
# An exported metric in a rule expression; recorded series (a:b:c) are not the exporter's.
METRIC_NAME = re.compile(r"(?<![:\w])(?:celery|fleetops)_\w+(?![:\w])")


def lowered_breaking_points(path: Path) -> Path:
    text = (REPO / "fleetops" / "breaking_points.toml").read_text()
    text = re.sub(
        r"(\[signals\.queue_depth\][^\[]*?)warning = 1000\ncritical = 5000\nbreaking = 10000",
        rf"\1warning = 5\ncritical = {CRITICAL_DEPTH}\nbreaking = 1000",
        text,
    )
    assert f"critical = {CRITICAL_DEPTH}" in text and "\n[alerts.for]\n" not in text
    path.write_text(f'{text}\n[alerts.for]\n{ALERT} = "{HOLD}"\n')
    return path


@pytest.fixture
def stack(
    redis_server: RedisServer,
    fleet_env: dict[str, str],
    processes: Processes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict:
    points_file = lowered_breaking_points(tmp_path / "bp.toml")
    monkeypatch.setenv(breaking_points.FILE_ENV, str(points_file))
    points = breaking_points.load()
    ports = StackPorts(prometheus=free_port(), alertmanager=free_port(), pager=free_port())
    # Every process reads the lowered breaking points, as the fleet's would.
    env = {breaking_points.FILE_ENV: str(points_file)}
    exporter = run_exporter(processes, redis_server.url, "--queue", QUEUE, env=env, wait=False)
    flower = fleet_exporters(redis_server.url, tmp_path)["flower"]
    assert flower.url is not None
    files = render_stack(
        tmp_path / "alerting", points=points, config=points.alerts, ports=ports,
        exporter_targets=[f"127.0.0.1:{exporter.port}"],
        flower_targets=[host_port(flower.url)],
        scrape_interval="1s", evaluation_interval="1s", group_wait="1s", group_interval="2s",
    )  # fmt: skip
    # All start at once; the fixture returns once each is ready.
    started = [
        exporter.child,
        processes.start(flower, {**fleet_env, **env}, wait=False),
        processes.start(pager_spec(ports.pager, files.pages_log), env, wait=False),
        processes.start(alertmanager_spec(files, ports.alertmanager), env, wait=False),
        processes.start(prometheus_spec(files, ports.prometheus, resend_delay="2s"), env,
                        wait=False),
    ]  # fmt: skip
    for child in started:
        child.wait_ready()
    urls = {
        "exporter": exporter.url,
        "flower": flower.url,
        "pager": f"http://127.0.0.1:{ports.pager}",
        "alertmanager": f"http://127.0.0.1:{ports.alertmanager}",
        "prometheus": f"http://127.0.0.1:{ports.prometheus}",
    }
    return {"urls": urls, "redis": redis_server, "dir": tmp_path}


def _query(prometheus: str, promql: str) -> list[dict]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=5)
    return response.json()["data"]["result"]


def _pages(pager: str, status: str) -> list[dict]:
    return [
        page
        for page in httpx.get(f"{pager}/pages", timeout=5).json()
        if page["alertname"] == ALERT and page["status"] == status
        and page["labels"].get("queue_name") == QUEUE
    ]  # fmt: skip


def _depth(redis_server) -> int:
    """Messages in the queue's Redis lists: kombu keeps one per priority step."""
    client = redis_server.client()
    keys = [QUEUE, *client.scan_iter(match=f"{QUEUE}\x06\x16*")]
    return sum(client.llen(key) for key in keys)


def _metrics_in_rules() -> set[str]:
    names: set[str] = set()
    for path in (ALERTS_DIR / "prometheus_alerts.yaml", ALERTS_DIR / "prometheus_rules.yaml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                names |= set(METRIC_NAME.findall(rule["expr"]))
    return names


def _exported_families(exporter: str) -> set[str]:
    return _families(httpx.get(f"{exporter}/metrics", timeout=5).text)


def _recorder_families(data_dir: Path) -> set[str]:
    # The history alerts read the recorder's /metrics. A Recorder that is built but never run
    # serves the same families (its registry, plus the stream's rejections and health) without
    # a database or broker connection.
    from exporters.history.recorder import Recorder
    from exporters.history.settings import HistorySettings

    settings = HistorySettings(broker_url="redis://127.0.0.1:1/0", data_dir=data_dir)
    return _families(Recorder(settings).metrics.render().decode())


def _families(text: str) -> set[str]:
    samples = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1].isalpha()}
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    return samples | families


def _flower_saw_tasks(prometheus: str) -> bool:
    # Flower's own task metrics, not just `up`: Flower consumed the worker's events.
    promql = f'flower_events_total{{job="flower", type="task-succeeded", task="{TASK}"}} > 0'
    return bool(_query(prometheus, promql))


def test_a_backlog_pages_with_its_runbook_and_resolves_when_drained(
    stack: dict, start_worker: Callable[..., CeleryProcess]
) -> None:
    urls = stack["urls"]
    wait_for(
        lambda: _query(urls["prometheus"], f'celery_queue_length{{queue_name="{QUEUE}"}} == 0'),
        timeout=60, message="Prometheus scraping the exporter's queue length",
    )  # fmt: skip
    wait_for(lambda: _query(urls["prometheus"], 'up{job="flower"} == 1'), timeout=60,
             message="Prometheus scraping Flower")  # fmt: skip

    client = client_app(stack["redis"].url)
    # As the fleet's producers do: task-sent events give the exporter each task's queue and
    # send time (per-queue failure ratios and end-to-end latency).
    client.conf.task_send_sent_event = True
    for _ in range(CRITICAL_DEPTH + 5):
        client.send_task(TASK, kwargs={"duration": 0.0}, queue=QUEUE)
    crossed_at = time.monotonic()
    assert _depth(stack["redis"]) >= CRITICAL_DEPTH

    page = wait_for(lambda: _pages(urls["pager"], "firing"), timeout=90,
                    interval=0.1, message=f"{ALERT} at the pager")[0]  # fmt: skip
    time_to_page = time.monotonic() - crossed_at

    assert page["severity"] == "critical" and page["channel"] == "page"
    assert "holds 15 waiting messages" in page["description"]
    runbook = httpx.get(page["runbook_url"], timeout=5)
    assert runbook.status_code == 200
    name = page["runbook_url"].rsplit("/", 1)[-1]
    assert (RUNBOOKS_DIR / name).is_file() and name == f"{ALERT}.md"
    assert runbook.text == (RUNBOOKS_DIR / name).read_text()
    assert page["dashboard_url"].endswith(f"/d/fleetops-queue?var-app=default&var-queue={QUEUE}")

    # The mitigation of the runbook: start a worker on the queue; it drains the backlog.
    draining_at = time.monotonic()
    start_worker(queues=QUEUE, name="drainer", concurrency=2)
    wait_for(lambda: _depth(stack["redis"]) == 0, timeout=90,
             message=f"the worker draining {QUEUE}")  # fmt: skip
    wait_for(lambda: _pages(urls["pager"], "resolved"), timeout=90, interval=0.2,
             message=f"{ALERT} resolved at the pager")  # fmt: skip
    time_to_resolve = time.monotonic() - draining_at
    wait_for(lambda: _flower_saw_tasks(urls["prometheus"]), timeout=60,
             message="Flower's task metrics in Prometheus")  # fmt: skip
    missing = (
        _metrics_in_rules()
        - _exported_families(urls["exporter"])
        - _recorder_families(stack["dir"] / "recorder")
    )
    assert not missing, (
        f"the rules read metrics neither the exporter nor the recorder serve: {sorted(missing)}"
    )
    print(f"\ntime from crossing the threshold to the page: {time_to_page:.1f} s;"
          f" from starting a worker to the resolved page: {time_to_resolve:.1f} s"
          f" (for {HOLD}, scrape/eval 1 s, group_wait 1 s, group_interval 2 s)")  # fmt: skip
