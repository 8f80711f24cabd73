"""The console's app selector against a real Prometheus holding two apps' series.

App ``default`` is the shared console fleet (its worker and Redis); app ``billing`` has a Redis
of its own and one solo worker consuming ``invoices``. One real exporter follows both
(FLEETOPS_APPS) and labels its series with each app, as in a deployment; Prometheus scrapes it
with no target labels, so the exporter's own ``app`` label is the one the console reads.
Billing's ``images`` queue holds BILLING_IMAGES messages nobody consumes: a queue of the same
name as the default app's, which "All apps" must show as two rows, never one sum."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from streamlit.testing.v1 import AppTest

from alerts.config import EXPORTER_JOB
from alerts.fleet import prometheus_spec
from alerts.stack import StackFiles
from console import apps, audit, auth, links, ui
from console.settings import load
from console.sources import control, history
from console.sources.prometheus import Prometheus
from exporters.history.database import create_history_engine
from fleetops.apps import App
from fleetops.fleet.spec import free_port
from tests.console.apptest import login, page, run, texts
from tests.console.conftest import Workload
from tests.console.fleet import Fleet
from tests.exporter.process import run_exporter
from tests.helpers import wait_for
from tests.history.events import task_lifecycle
from tests.processes import processes_in
from tests.servers import RedisServer, run_worker
from tests.stream.checked import CheckedHistoryWriter as HistoryWriter

pytestmark = pytest.mark.slow

BILLING_QUEUE = "invoices"
BILLING_WORKER = "billing-worker@127.0.0.1"
BILLING_IMAGES = 600
OPERATOR = "on-call"
# The tasks this module writes into the shared history: a name and queue of their own, so the
# other console tests' counts of the fleet's tasks do not see them.
OWN_TASK = {"name": "apps.retry_probe", "queue": "apps-retry"}


@pytest.fixture(scope="module")
def billing(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """Billing's broker, worker and one exporter following both apps, scraped by a Prometheus:
    (billing's broker URL, the Prometheus URL)."""
    directory = tmp_path_factory.mktemp("two-apps")
    with processes_in(directory) as processes:
        redis = RedisServer(processes).start()
        data = directory / "billing"
        data.mkdir()
        worker = run_worker(
            processes, BILLING_WORKER, BILLING_QUEUE,
            {"FLEETOPS_BROKER_URL": redis.url, "FLEETOPS_DATA_DIR": str(data),
             "FLEETOPS_DATABASE_URL": f"sqlite:///{data / 'fleetops.db'}"},
            concurrency=1, pool="solo", wait=False,
        )  # fmt: skip
        # Waiting messages nobody consumes (their content is never read: only counted).
        redis.client().lpush("images", *[b"{}"] * BILLING_IMAGES)
        exporter = run_exporter(
            processes,
            fleet.redis.url,
            env={
                "FLEETOPS_APPS": f"default={fleet.redis.url},billing={redis.url}",
                "FLEETOPS_EXPORTER_QUEUES": json.dumps(["images", BILLING_QUEUE]),
            },
            wait=False,
        )
        port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": EXPORTER_JOB,
                    "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}],
                }
            ],
        }
        config_file = directory / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        files = StackFiles(config_file, directory / "data", Path(), Path(), Path())
        processes.start(prometheus_spec(files, port))
        url = f"http://127.0.0.1:{port}"
        worker.child.wait_ready()
        exporter.child.wait_ready()
        prom = Prometheus(url)
        wait_for(
            lambda: (
                prom.by_labels(
                    'max by (app, hostname) (celery_worker_up{app="billing"})',
                    ("app", "hostname"),
                ).get(("billing", BILLING_WORKER))
                == 1
                and prom.by_labels(
                    'max by (app) (celery_queue_length{queue_name="images"})', ("app",)
                ).get(("billing",))
                == BILLING_IMAGES
            ),
            timeout=60,
            message="Prometheus scraped billing's worker and queue from the exporter",
        )
        yield redis.url, url


@pytest.fixture
def two_app_console(
    console_env: Fleet,
    workload: Workload,
    billing: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Fleet:
    broker, prometheus = billing
    monkeypatch.setenv("FLEETOPS_PROMETHEUS_URL", prometheus)
    monkeypatch.setenv("FLEETOPS_APPS", f"default={console_env.redis.url},billing={broker}")
    monkeypatch.setenv("FLEETOPS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FLEETOPS_CONSOLE_LOCAL_OPERATOR", OPERATOR)
    # A fresh login throttle: it is per process, and AppTest runs in this one.
    monkeypatch.setattr(auth, "_THROTTLE", auth.LoginThrottle())
    return console_env


def _links(app: AppTest) -> str:
    """Every link the page wrote: its text and its tables' link columns."""
    frames = [str(frame.value.to_dict()) for frame in app.dataframe]
    return texts(app) + "\n".join(frames)


def _table(app: AppTest, column: str) -> Any:
    [table] = [frame.value for frame in app.dataframe if column in frame.value.columns]
    return table


def test_the_selector_filters_every_page_by_app(two_app_console: Fleet) -> None:
    queues = run(page("queues"))
    # Several apps: the sidebar offers them, configured first, with all apps by default.
    selector = queues.selectbox(key=ui.APP_WIDGET)
    assert selector.options == [apps.ALL_APPS, "default", "billing"]
    assert selector.value == apps.ALL_APPS
    # All apps: one row per app and queue, each opening its own app; the two apps' "images"
    # are two rows, billing's with its own depth and no consumer (never a sum of the two).
    table = _table(queues, "open")
    rows = {(r["app"], r["queue"]): r for r in table.to_dict("records")}
    assert {("default", "images"), ("billing", "images"), ("billing", BILLING_QUEUE)} <= set(rows)
    assert rows["billing", "images"]["depth"] == BILLING_IMAGES
    assert rows["billing", "images"]["consumers"] == 0
    assert rows["billing", "images"]["open"] == "/queues?queue=images&app=billing"
    assert rows["default", "images"]["open"] == "/queues?queue=images&app=default"
    # The Overview's queue table and worker rows too.
    overview = _table(run(page("overview")), "open")
    assert {("billing", "images"), ("default", "images")} <= set(
        zip(overview["app"], overview["queue"], strict=True)
    )
    workers = _table(run(page("workers")), "open")
    by_worker = dict(zip(workers["worker"], workers["app"], strict=True))
    assert by_worker[BILLING_WORKER] == "billing"
    assert by_worker[two_app_console.worker.hostname] == "default"

    # One app chosen: its own numbers only (the exporter reports both queues for both apps).
    billing = _table(run(page("queues", app="billing")), "open").set_index("queue")
    assert billing.loc["images", "depth"] == BILLING_IMAGES
    own = _table(run(page("queues", app="default")), "open").set_index("queue")
    assert own.loc["images", "depth"] < BILLING_IMAGES
    assert all(link.endswith("&app=default") for link in own["open"])

    workers = _links(run(page("workers", app="billing")))
    assert BILLING_WORKER in workers and two_app_console.worker.hostname not in workers
    overview = run(page("overview", app="default"))
    assert BILLING_WORKER not in _links(overview)
    assert "app" not in _table(overview, "open").columns

    # Choosing in the sidebar writes the URL, so the address bar opens the same view.
    run(queues.selectbox(key=ui.APP_WIDGET).select("billing"))
    assert queues.query_params.get(links.APP) in ("billing", ["billing"])
    assert "app=default" not in _links(queues)

    # A name nobody knows is not used (and never reaches a query): all apps, with a warning.
    hostile = run(page("queues", app='x"} or vector(1) #'))
    assert "is not an app name" in texts(hostile)
    assert "images" in _links(hostile) and BILLING_QUEUE in _links(hostile)


def test_links_keep_the_app(two_app_console: Fleet) -> None:
    app = run(page("queues", app="billing"))
    table = _table(app, "open")
    assert list(table["open"]) == [f"/queues?queue={q}&app=billing" for q in table["queue"]]
    assert {"images", BILLING_QUEUE} <= set(table["queue"])

    focused = run(page("queues", queue="images", app="default"))
    shown = texts(focused)
    assert "/tasks?queue=images&app=default" in shown
    assert "/tasks?queue=images&state=FAILURE&app=default" in shown


def test_actions_go_only_to_the_one_chosen_apps_broker(
    two_app_console: Fleet, billing: tuple[str, str]
) -> None:
    fleet = two_app_console
    audit_log = load().audit_log
    host = fleet.worker.hostname
    broker = billing[0]

    # Two apps and none chosen: nothing can be confirmed, and a forced click does nothing.
    app = login(run(page("workers", worker=host)), fleet.console_password)
    run(app.selectbox(key="worker_action").select("Add consumer"))
    run(app.text_input(key="consumer_queue").input("apps-extra"))
    assert app.checkbox(key="worker_confirm").disabled
    assert "choose one app (sidebar)" in texts(app)
    # A browser cannot tick or press a disabled widget; a crafted message can.
    run(_forced(app.checkbox(key="worker_confirm")).check())
    run(_forced(app.button(key="worker_run")).click())
    assert [e for e in audit.read(audit_log) if "action_id" in e] == []
    assert "apps-extra" not in _queues(fleet.redis.url, host)

    # Billing chosen: its broker and its worker, not the default app's.
    app = login(run(page("workers", worker=BILLING_WORKER, app="billing")), fleet.console_password)
    run(app.selectbox(key="worker_action").select("Add consumer"))
    run(app.text_input(key="consumer_queue").input("apps-extra"))
    run(app.checkbox(key="worker_confirm").check())
    run(app.button(key="worker_run").click())
    wait_for(
        lambda: "apps-extra" in _queues(broker, BILLING_WORKER), timeout=30, message="consuming"
    )
    run(app.selectbox(key="worker_action").select("Cancel consumer"))
    run(app.checkbox(key="worker_confirm").check())
    run(app.button(key="worker_run").click())
    wait_for(
        lambda: "apps-extra" not in _queues(broker, BILLING_WORKER),
        timeout=30,
        message="cancelled",
    )
    assert "apps-extra" not in _queues(fleet.redis.url, host)
    entries = [e for e in audit.read(audit_log) if "action_id" in e]
    assert len(entries) == 4
    assert {e["app"] for e in entries} == {"billing"}
    assert {e["worker"] for e in entries} == {BILLING_WORKER}
    assert {e["who"] for e in entries} == {f"local:{OPERATOR}"}


def test_one_app_shows_no_selector_and_reads_series_without_the_label(
    console_env: Fleet, workload: Workload
) -> None:
    """The fleet's own Prometheus: one app, its series labelled or not (an exporter from
    before the label); a link that names the app still finds them."""
    plain = run(page("queues"))
    assert not [box for box in plain.selectbox if box.key == ui.APP_WIDGET]
    assert "&app=" not in _links(plain)
    named = run(page("queues", app="default"))
    assert "images" in _links(named)


def test_an_app_only_prometheus_knows_is_read_but_not_acted_on() -> None:
    """Without a server: which broker an action goes to, from what is configured."""
    orders = App("orders", "redis://127.0.0.1:6390/0")
    one = apps.choice([orders], (), None)
    assert not one.several and one.acting == orders and one.refusal() is None
    both = apps.choice([orders], ("billing", "orders"), None)
    assert both.options == ("orders", "billing") and both.acting is None
    assert "choose one app" in (both.refusal() or "")
    only_seen = apps.choice([orders], ("billing",), "billing")
    assert only_seen.acting is None and "knows no broker" in (only_seen.refusal() or "")
    assert apps.choice([orders], ("billing",), "orders").acting == orders
    assert apps.problem("orders", both.options) is None
    assert "not an app name" in (apps.problem('x"}', both.options) or "")
    assert "not known" in (apps.problem("other", both.options) or "")
    # The matcher: a regular expression of the name only ('.' is literal) or no label at all.
    assert apps.app_matcher("orders.eu") == 'app=~"orders\\\\.eu|"'
    assert apps.with_app('job="x"', None) == 'job="x"'
    with pytest.raises(ValueError):
        apps.app_matcher('x"} or vector(1)')


def test_history_queries_get_the_app_or_refuse_it(console_env: Fleet) -> None:
    """The adapter in front of the history store passes ``app`` to every query; one without
    the keyword asked for one app is an error, not a read of every app."""
    engine = create_history_engine(console_env.history_url)
    seen: list[object] = []

    def scoped(engine: object, *, app: str | None = None) -> str:
        seen.append(app)
        return "read"

    try:
        assert history.call(engine, scoped, app="billing") == "read"
        assert history.call(engine, scoped) == "read"
        assert seen == ["billing", None]
        names = history.call(engine, history.task_names, app="billing")
        assert isinstance(names, list)

        def unscoped(engine: object) -> str:
            return "every app's rows"

        assert history.call(engine, unscoped) == "every app's rows"
        with pytest.raises(history.NoAppFilter, match="unscoped"):
            history.call(engine, unscoped, app="billing")
    finally:
        engine.dispose()


def _failed_probe(task_id: str) -> list[dict]:
    """A failed task of this module's own name, queue and exception: the shared fleet's history
    keeps it, and later pages count the fleet's own failures (e.g. its ValueError row)."""
    events = task_lifecycle(task_id, start=time.time() - 60, outcome="failed", **OWN_TASK)
    events[-1]["exception"] = "RetryProbeError('failed on purpose by tests/console/test_apps')"
    return events


def test_a_task_is_retried_and_revoked_only_through_its_own_app(
    two_app_console: Fleet, billing: tuple[str, str]
) -> None:
    """Real history rows of two apps (the store's writer, as the recorder writes them): the
    task page acts on a task only with the task's own app chosen, and the audit names it."""
    fleet = two_app_console
    audit_log = load().audit_log
    engine = create_history_engine(fleet.history_url)
    billing_task, default_task = f"billing-{uuid.uuid4()}", f"default-{uuid.uuid4()}"
    try:
        HistoryWriter(engine, default_app="billing").write(_failed_probe(billing_task))
        HistoryWriter(engine, default_app="default").write(_failed_probe(default_task))
    finally:
        engine.dispose()

    for task_id, chosen, owner in ((billing_task, "default", "billing"),
                                   (default_task, "billing", "default")):  # fmt: skip
        app = login(run(page("tasks", task_id=task_id, app=chosen)), fleet.console_password)
        assert app.checkbox(key="revoke_confirm").disabled
        assert f"belongs to app {owner!r}" in texts(app)
        run(_forced(app.checkbox(key="revoke_confirm")).check())
        run(_forced(app.button(key="revoke_run")).click())
    assert [e for e in audit.read(audit_log) if "action_id" in e] == []

    # Its own app chosen: the task's row is shown and it is sent again on billing's broker
    # (no billing worker consumes its queue: it waits there), audited with both apps.
    app = login(run(page("tasks", task_id=billing_task, app="billing")), fleet.console_password)
    run(app.checkbox(key="retry_confirm").check())
    run(app.button(key="retry_run").click())
    [sent] = audit.results(audit_log)
    assert sent["app"] == sent["target_app"] == "billing", sent
    assert sent["task_id"] == billing_task and sent["result"].startswith("sent as"), sent
    # On billing's broker, in the task's queue (or one of its priority sub-queues).
    broker = redis.Redis.from_url(billing[0])
    assert sum(broker.llen(key) for key in broker.scan_iter(match="apps-retry*")) == 1


def test_a_confirmation_does_not_follow_a_switch_of_app(two_app_console: Fleet) -> None:
    """Ticked with one app chosen, a confirmation is void once the sidebar names another: the
    text it was armed with names the app."""
    fleet = two_app_console
    task_id = f"unknown-{uuid.uuid4()}"  # not in the history: revocable on the chosen broker
    app = login(run(page("tasks", task_id=task_id, app="default")), fleet.console_password)
    assert app.checkbox(key="revoke_confirm").label.endswith("(app default)")
    run(app.checkbox(key="revoke_confirm").check())
    run(app.selectbox(key=ui.APP_WIDGET).select("billing"))
    assert app.checkbox(key="revoke_confirm").label.endswith("(app billing)")
    assert not app.checkbox(key="revoke_confirm").value
    run(_forced(app.button(key="revoke_run")).click())
    assert [e for e in audit.read(load().audit_log) if "action_id" in e] == []


def _forced(widget: Any) -> Any:
    """The test's copy of a disabled widget, enabled as a crafted message would press it."""
    widget.proto.disabled = False
    return widget


def _queues(broker: str, host: str) -> set[str]:
    replies = control.app_for(broker).control.inspect([host], timeout=5, limit=1).active_queues()
    return {queue["name"] for queue in (replies or {}).get(host, [])}
