"""The console's app selector against a real Prometheus holding two apps' series.

App ``default`` is the shared console fleet (its real exporter, worker and Redis). App
``billing`` has no Celery of its own here: a plain HTTP server in this process serves its
series in the exposition format (a queue and a worker), so nothing but scraping stands in for
a second fleet. One real Prometheus scrapes both as the exporter's job, with the target label
``app`` telling them apart, as one exporter following two apps labels its series (an exporter
that already labels its series keeps ours: Prometheus files its own under ``exported_app``).
``billing``'s broker is a port nobody listens on: no action may reach it."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
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
from tests.helpers import wait_for
from tests.history.events import task_lifecycle
from tests.processes import processes_in
from tests.stream.checked import CheckedHistoryWriter as HistoryWriter

pytestmark = pytest.mark.slow

BILLING_QUEUE = "invoices"
BILLING_WORKER = "billing-worker@10.0.0.2"
BILLING_SERIES = f"""\
# TYPE celery_queue_length gauge
celery_queue_length{{queue_name="{BILLING_QUEUE}"}} 7
# TYPE celery_active_consumer_count gauge
celery_active_consumer_count{{queue_name="{BILLING_QUEUE}"}} 1
# TYPE celery_worker_up gauge
celery_worker_up{{hostname="{BILLING_WORKER}"}} 1
# TYPE fleetops_worker_memory_percent gauge
fleetops_worker_memory_percent{{hostname="{BILLING_WORKER}"}} 12.5
"""
NOBODY = "redis://127.0.0.1:1/0"
OPERATOR = "on-call"


class _Billing(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = BILLING_SERIES.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def two_apps(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prometheus scraping the fleet's exporter as app ``default`` and billing's series."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Billing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    directory = tmp_path_factory.mktemp("two-apps")
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": EXPORTER_JOB,
                "static_configs": [
                    {"targets": [f"127.0.0.1:{fleet.exporter.port}"], "labels": {"app": "default"}},
                    {"targets": [f"127.0.0.1:{server.server_port}"], "labels": {"app": "billing"}},
                ],
            }
        ],
    }
    config_file = directory / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    files = StackFiles(config_file, directory / "data", Path(), Path(), Path())
    try:
        with processes_in(directory) as processes:
            processes.start(prometheus_spec(files, port))
            url = f"http://127.0.0.1:{port}"
            # The query the console asks, not its cached answer (an early empty one would stay).
            expr = apps.reported_expr(f'job="{EXPORTER_JOB}"')
            wait_for(
                lambda: (
                    {s.labels.get("app") for s in Prometheus(url).query(expr)}
                    == {"billing", "default"}
                ),
                timeout=60,
                message="Prometheus scraped both apps",
            )
            yield url
    finally:
        server.shutdown()


@pytest.fixture
def two_app_console(
    console_env: Fleet,
    workload: Workload,
    two_apps: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Fleet:
    monkeypatch.setenv("FLEETOPS_PROMETHEUS_URL", two_apps)
    monkeypatch.setenv("FLEETOPS_APPS", f"default={console_env.redis.url},billing={NOBODY}")
    monkeypatch.setenv("FLEETOPS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FLEETOPS_CONSOLE_LOCAL_OPERATOR", OPERATOR)
    # A fresh login throttle: it is per process, and AppTest runs in this one.
    monkeypatch.setattr(auth, "_THROTTLE", auth.LoginThrottle())
    return console_env


def _links(app: AppTest) -> str:
    """Every link the page wrote: its text and its tables' link columns."""
    frames = [str(frame.value.to_dict()) for frame in app.dataframe]
    return texts(app) + "\n".join(frames)


def test_the_selector_filters_every_page_by_app(two_app_console: Fleet) -> None:
    queues = run(page("queues"))
    # Several apps: the sidebar offers them, configured first, with all apps by default.
    selector = queues.selectbox(key=ui.APP_WIDGET)
    assert selector.options == [apps.ALL_APPS, "default", "billing"]
    assert selector.value == apps.ALL_APPS
    everything = _links(queues)
    assert BILLING_QUEUE in everything and "images" in everything

    billing = _links(run(page("queues", app="billing")))
    assert BILLING_QUEUE in billing and "images" not in billing
    own = _links(run(page("queues", app="default")))
    assert "images" in own and BILLING_QUEUE not in own

    workers = _links(run(page("workers", app="billing")))
    assert BILLING_WORKER in workers and two_app_console.worker.hostname not in workers

    # Choosing in the sidebar writes the URL, so the address bar opens the same view.
    run(queues.selectbox(key=ui.APP_WIDGET).select("billing"))
    assert queues.query_params.get(links.APP) in ("billing", ["billing"])
    assert "images" not in _links(queues)

    # A name nobody knows is not used (and never reaches a query): all apps, with a warning.
    hostile = run(page("queues", app='x"} or vector(1) #'))
    assert "is not an app name" in texts(hostile)
    assert "images" in _links(hostile) and BILLING_QUEUE in _links(hostile)


def test_links_keep_the_app(two_app_console: Fleet) -> None:
    app = run(page("queues", app="billing"))
    [table] = [frame.value for frame in app.dataframe if "open" in frame.value.columns]
    assert list(table["open"]) == [f"/queues?queue={BILLING_QUEUE}&app=billing"]

    focused = run(page("queues", queue="images", app="default"))
    shown = texts(focused)
    assert "/tasks?queue=images&app=default" in shown
    assert "/tasks?queue=images&state=FAILURE&app=default" in shown
    # Without a choice, links carry no app (one app's links stay as they were).
    assert "&app=" not in texts(run(page("queues", queue="images")))


def test_actions_go_only_to_the_one_chosen_apps_broker(two_app_console: Fleet) -> None:
    fleet = two_app_console
    audit_log = load().audit_log
    host = fleet.worker.hostname

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
    assert "apps-extra" not in _queues(fleet)

    # Billing chosen: its broker, not the default app's (nobody listens there: it fails,
    # and the audit says so with the app).
    app = login(run(page("workers", worker=BILLING_WORKER, app="billing")), fleet.console_password)
    run(app.selectbox(key="worker_action").select("Add consumer"))
    run(app.text_input(key="consumer_queue").input("apps-extra"))
    run(app.checkbox(key="worker_confirm").check())
    run(app.button(key="worker_run").click())
    [failed] = audit.results(audit_log)
    assert failed["app"] == "billing", failed
    assert "Broker (Celery control) is unavailable" in failed["result"], failed
    assert "127.0.0.1:1" in failed["result"], failed
    assert failed["worker"] == BILLING_WORKER
    assert "apps-extra" not in _queues(fleet)

    # One app chosen: the action runs on its broker and the audit names the app.
    app = login(run(page("workers", worker=host, app="default")), fleet.console_password)
    run(app.selectbox(key="worker_action").select("Add consumer"))
    run(app.text_input(key="consumer_queue").input("apps-extra"))
    run(app.checkbox(key="worker_confirm").check())
    run(app.button(key="worker_run").click())
    wait_for(lambda: "apps-extra" in _queues(fleet), timeout=30, message="consuming")
    run(app.selectbox(key="worker_action").select("Cancel consumer"))
    run(app.checkbox(key="worker_confirm").check())
    run(app.button(key="worker_run").click())
    wait_for(lambda: "apps-extra" not in _queues(fleet), timeout=30, message="cancelled")
    entries = [e for e in audit.read(audit_log) if "action_id" in e][2:]
    assert len(entries) == 4
    assert {e["app"] for e in entries} == {"default"}
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


def test_a_task_is_retried_and_revoked_only_through_its_own_app(two_app_console: Fleet) -> None:
    """Real history rows of two apps (the store's writer, as the recorder writes them): the
    task page acts on a task only with the task's own app chosen, and the audit names it."""
    fleet = two_app_console
    audit_log = load().audit_log
    engine = create_history_engine(fleet.history_url)
    billing_task, default_task = f"billing-{uuid.uuid4()}", f"default-{uuid.uuid4()}"
    try:
        HistoryWriter(engine, default_app="billing").write(
            task_lifecycle(billing_task, start=time.time() - 60, outcome="failed")
        )
        HistoryWriter(engine, default_app="default").write(
            task_lifecycle(default_task, start=time.time() - 60, outcome="failed")
        )
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

    # Its own app chosen: the task's row is shown and the action goes to billing's broker
    # (nobody listens there: it fails), audited with the app acted on and the task's app.
    app = login(run(page("tasks", task_id=billing_task, app="billing")), fleet.console_password)
    run(app.checkbox(key="retry_confirm").check())
    run(app.button(key="retry_run").click())
    [failed] = audit.results(audit_log)
    assert failed["app"] == failed["target_app"] == "billing", failed
    assert failed["task_id"] == billing_task


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


def _queues(fleet: Fleet) -> set[str]:
    host = fleet.worker.hostname
    replies = (
        control.app_for(fleet.redis.url).control.inspect([host], timeout=5, limit=1).active_queues()
        or {}
    )
    return {queue["name"] for queue in replies.get(host, [])}
