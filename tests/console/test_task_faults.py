"""The Stuck & orphaned page under AppTest: the lists from a real history database seeded with
every kind of task fault (tests/history/faults.py), the counts and the fleet's settings from a
real Prometheus.

What Prometheus scrapes here is a STAND-IN for the exporter's /metrics: a few lines of
exposition text the test sets. The exporter's own issue-14 metrics are not part of this
component, and the page must also be shown values no healthy exporter sends (NaN, +Inf,
negative), which only a stand-in can serve. Prometheus, its queries and the history are real.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import event as sqlalchemy_event
from streamlit.testing.v1 import AppTest

from console import links
from console import task_faults as faults
from console.durations import duration_text
from console.sources import history
from console.sources.alertmanager import Alert
from console.trouble import troubles
from exporters.history import migrate
from exporters.history.database import create_history_engine
from exporters.history.schema import tasks
from fleetops import task_faults as rules
from fleetops.breaking_points import current
from tests.console.apptest import page, run, texts
from tests.dashboards.prometheus_server import PrometheusServer
from tests.helpers import wait_for
from tests.history.events import task_lifecycle
from tests.history.faults import ALIVE, DEAD, GONE, RESTARTED, record, seed
from tests.processes import processes_in

VISIBILITY = 3600.0
SELECTOR = 'job="fleetops-exporter"'


def exposition(*, repeated: float, lost: float, eta: float, visibility: str = "3600") -> str:
    """The exporter's issue-14 series (docs/metrics.md) with the given values."""
    task = 'name="maintenance.probe",queue_name="maintenance"'
    return f"""\
# TYPE fleetops_tasks_orphaned gauge
fleetops_tasks_orphaned{{{task}}} 2
fleetops_tasks_orphaned{{name="other.task",queue_name="maintenance"}} 1
# TYPE fleetops_tasks_stuck gauge
fleetops_tasks_stuck{{name="slow.task",queue_name="maintenance"}} 1
# TYPE fleetops_task_runs_repeated_total counter
fleetops_task_runs_repeated_total{{name="trap.task",queue_name="maintenance"}} {repeated}
# TYPE fleetops_task_orphans_total counter
fleetops_task_orphans_total{{{task},outcome="lost"}} {lost}
fleetops_task_orphans_total{{{task},outcome="redelivered"}} {lost + 5}
# TYPE fleetops_task_eta_beyond_visibility_total counter
fleetops_task_eta_beyond_visibility_total{{{task}}} {eta}
# TYPE fleetops_broker_visibility_timeout_seconds gauge
fleetops_broker_visibility_timeout_seconds{{acks_late="true"}} {visibility}
# TYPE fleetops_task_time_limit_seconds gauge
fleetops_task_time_limit_seconds{{name="slow.task"}} 3000
fleetops_task_time_limit_seconds{{name="maintenance.probe"}} 60
# TYPE fleetops_task_running_longest_seconds gauge
fleetops_task_running_longest_seconds{{name="trap.task",queue_name="maintenance"}} 500
# TYPE fleetops_task_stuck_bound_seconds gauge
fleetops_task_stuck_bound_seconds{{name="slow.task"}} 600
fleetops_task_stuck_bound_seconds{{name="maintenance.probe"}} 400
"""


HOSTILE = """\
fleetops_tasks_orphaned{name="a",queue_name="q"} NaN
fleetops_tasks_stuck{name="a",queue_name="q"} -3
fleetops_broker_visibility_timeout_seconds{acks_late="true"} NaN
fleetops_broker_visibility_timeout_seconds{acks_late="false"} +Inf
fleetops_task_stuck_bound_seconds{name="slow.task"} NaN
fleetops_task_time_limit_seconds{name="slow.task"} -1
"""


@dataclass
class MetricsStandIn:
    """Serves ``text`` at /metrics (see the module docstring for why it is a stand-in)."""

    text: str = ""
    server: ThreadingHTTPServer | None = field(default=None, repr=False)

    @property
    def target(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> MetricsStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = standin.text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self


@dataclass
class Sources:
    metrics: MetricsStandIn
    prometheus: PrometheusServer

    def value(self, expr: str) -> float | None:
        result = self.prometheus.query(expr)
        return float(result[0]["value"][1]) if result else None


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sources]:
    directory = tmp_path_factory.mktemp("task-faults")
    # The counters exist at 0 from the first scrape, as the exporter renders them, so that
    # increase() sees the step to the test's values.
    metrics = MetricsStandIn(exposition(repeated=0, lost=0, eta=0)).start()
    with processes_in(directory) as processes:
        prometheus = PrometheusServer(processes, targets={"fleetops-exporter": metrics.target})
        found = Sources(metrics, prometheus.start())
        # increase() extrapolates by up to one scrape interval past the samples it has: with
        # 8 s of samples a step of 3 reads at most 3.4, which the page shows as 3.
        samples = f"count_over_time(fleetops_task_runs_repeated_total{{{SELECTOR}}}[1h])"
        wait_for(
            lambda: (found.value(samples) or 0) >= 9,
            timeout=60,
            message="Prometheus has scraped the stand-in for 8 s",
        )
        yield found
    assert metrics.server is not None
    metrics.server.shutdown()


def seeded_history(directory: Path) -> str:
    """A fresh history whose "now" is this moment (its live workers heartbeat 5 s ago), with
    one task received with an ETA three hours away."""
    url = f"sqlite:///{directory / 'history.db'}"
    engine = create_history_engine(url)
    migrate.upgrade(engine)
    t0 = time.time() - 1000
    seed(engine, t0)
    record(engine, task_lifecycle("eta-far", start=t0, outcome="none"))
    eta = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(t0 + 3 * 3600 + 60))
    with engine.begin() as connection:
        connection.execute(tasks.update().where(tasks.c.task_id == "eta-far").values(eta=eta))
    engine.dispose()
    return url


def console_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prometheus: str, db: str) -> None:
    for key in [k for k in os.environ if k.startswith("FLEETOPS_")]:
        monkeypatch.delenv(key)
    env = {
        "FLEETOPS_DATA_DIR": str(tmp_path),
        "FLEETOPS_PROMETHEUS_URL": prometheus,
        "FLEETOPS_ALERTMANAGER_URL": "http://127.0.0.1:9",  # not read by this page
        "FLEETOPS_HISTORY_DATABASE_URL": db,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)


# AppTest does not expose a table's key: each table is known by a column only it has.
TABLE_COLUMN = {
    "orphaned": "outcome",
    "stuck": "bound",
    "twice": "each run",
    "eta": "ahead",
    "near": "share of the timeout",
    "runs": "kind",
}


def tables(app: AppTest, key: str) -> list[pd.DataFrame]:
    return [d.value for d in app.dataframe if TABLE_COLUMN[key] in d.value.columns]


def frame(app: AppTest, key: str) -> pd.DataFrame:
    [found] = tables(app, key)
    return found


def metrics(app: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in app.metric}


@pytest.mark.slow  # a real Prometheus
def test_every_fault_is_listed_worst_first_with_the_fleets_numbers(
    sources: Sources, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sources.metrics.text = exposition(repeated=3, lost=2, eta=1)
    window = faults.WINDOW
    increases = {
        "fleetops_task_runs_repeated_total": 3,
        'fleetops_task_orphans_total{outcome="lost"}': 2,
        "fleetops_task_eta_beyond_visibility_total": 1,
    }
    for series, wanted in increases.items():
        # increase() extrapolates over its window; the page shows it to the whole number.
        wait_for(
            lambda s=series, w=wanted: round(sources.value(f"sum(increase({s}[{window}]))") or 0)
            == w,
            timeout=60,
            message=f"Prometheus sees the increase of {series}",
        )  # fmt: skip
    url = seeded_history(tmp_path)
    console_env(monkeypatch, tmp_path, sources.prometheus.url, url)
    # The page runs in this process (AppTest): its engine is history.engine_for's, so the
    # statements it sends can be watched.
    runs_reads: list[str] = []

    def watch(conn: object, cursor: object, statement: str, *args: object) -> None:
        # queries.task_runs reads one task by key; queries.runs_of many, as "listed_runs".
        if "history_task_runs.task_id = " in statement or "listed_runs" in statement:
            runs_reads.append(statement)

    sqlalchemy_event.listen(history.engine_for(url), "before_cursor_execute", watch)
    app = run(page("task_faults"))
    sqlalchemy_event.remove(history.engine_for(url), "before_cursor_execute", watch)
    assert metrics(app) == {
        "Orphaned now": "3",
        "Stuck now": "1",
        f"Run twice ({window})": "3",
        f"Lost ({window})": "2",  # the redelivered outcome is not counted
        f"ETA beyond timeout ({window})": "1",
    }
    shown = texts(app)
    for alert in links.TASK_FAULT_ALERTS:
        assert links.runbook(alert) in shown

    # Acks late with a visibility timeout of an hour: redelivery may come for 61 min, so every
    # orphan still waits for it (without Prometheus they are lost: the next test). The task on
    # gone@h, which announced its shutdown, has run past its bound of 400 s since (a warm
    # shutdown drains it first): orphaned with that bound, not with the default hour.
    orphaned = frame(app, "orphaned")
    assert orphaned["outcome"].tolist() == ["waiting", "waiting", "waiting", "redelivered"]
    assert orphaned["task"].tolist() == [
        links.task(t) for t in ("orphan-lost", "orphan-waiting", "orphan-restart", "redelivered")
    ]
    assert orphaned["worker"].tolist() == [links.worker(w) for w in (DEAD, GONE, RESTARTED, DEAD)]
    assert orphaned["finished on"].tolist()[-1] == links.worker(ALIVE)
    assert "3 tasks waiting for redelivery" in shown

    # slow.task's bound is Prometheus's 600 s; other.task keeps the default hour.
    stuck = frame(app, "stuck")
    assert stuck["task"].tolist() == [links.task("stuck-named")]
    assert stuck["bound"].tolist() == ["10 min"]

    twice = frame(app, "twice")
    assert twice["task"].tolist() == [links.task(t) for t in ("thrice", "trap", "redelivered")]
    # Every listed task's runs in one read of the runs table, not one read per task.
    assert len(runs_reads) == 1, runs_reads
    assert twice["runs"].tolist() == [3, 2, 2]
    trap_runs = twice.set_index("task").loc[links.task("trap"), "each run"]
    assert trap_runs.count(f"started on {ALIVE} at") == 2

    # The trap: the timeout in force, the task whose ETA lies beyond it, and the time limit
    # near it (3000 s is 83 % of an hour; 60 s and a 500 s run are not near).
    assert "Visibility timeout in force: **3,600 s**" in shown
    assert "`task_acks_late` **on**" in shown
    eta = frame(app, "eta")
    assert eta["task"].tolist() == [links.task("eta-far")]
    assert eta["ahead"].tolist() == ["3.0 h"]
    near = frame(app, "near")
    assert near["name"].tolist() == ["slow.task"]
    assert near["share of the timeout"].tolist() == ["83%"]
    assert not app.error


@pytest.mark.slow  # a real Prometheus
def test_without_prometheus_the_lists_use_the_defaults(
    sources: Sources, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    console_env(monkeypatch, tmp_path, "http://127.0.0.1:9", seeded_history(tmp_path))
    app = run(page("task_faults"))
    assert any(e.value.startswith("Prometheus is unavailable") for e in app.error)
    assert set(metrics(app).values()) == {"n/a"}
    # The default redelivery window (5 min) has passed for every orphan: lost, first. The task
    # on gone@h, which announced its shutdown, is still draining under the default bound (1 h).
    orphaned = frame(app, "orphaned")
    assert orphaned["outcome"].tolist() == ["lost", "lost", "redelivered"]
    assert orphaned["task"].tolist() == [
        links.task(t) for t in ("orphan-lost", "orphan-restart", "redelivered")
    ]
    assert "2 tasks lost" in "\n".join(e.value for e in app.error)
    # Nothing runs for the default hour; twice-run tasks need no Prometheus.
    assert "No task runs past its bound." in texts(app)
    assert len(frame(app, "twice")) == 3
    assert "No visibility timeout is known" in texts(app)


@pytest.mark.slow  # a real Prometheus
def test_hostile_numbers_and_a_history_that_is_down_show_messages(
    sources: Sources, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sources.metrics.text = HOSTILE
    hostile_timeout = "fleetops_broker_visibility_timeout_seconds"
    wait_for(
        lambda: (
            (v := sources.value(f'{hostile_timeout}{{{SELECTOR}, acks_late="true"}}')) is not None
            and math.isnan(v)
        ),
        timeout=60,
        message="Prometheus scraped the hostile values",
    )
    down = "postgresql://nobody@127.0.0.1:9/none"
    console_env(monkeypatch, tmp_path, sources.prometheus.url, down)
    app = run(page("task_faults"))
    shown = texts(app)
    assert metrics(app)["Orphaned now"] == "n/a" and metrics(app)["Stuck now"] == "n/a"
    assert "No visibility timeout is known" in shown
    banners = [e.value for e in app.error]
    assert sum(b.startswith("Task history database is unavailable") for b in banners) == 1

    # An empty history: every section says so.
    engine = create_history_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    migrate.upgrade(engine)
    engine.dispose()
    console_env(monkeypatch, tmp_path, sources.prometheus.url, f"sqlite:///{tmp_path / 'empty.db'}")
    shown = texts(run(page("task_faults")))
    assert f"No task was orphaned in the last {faults.WINDOW}." in shown
    assert "No task runs past its bound." in shown
    assert f"No task ran twice in the last {faults.WINDOW}." in shown


def test_the_task_detail_shows_every_run_of_a_task_started_twice(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    console_env(monkeypatch, tmp_path, "http://127.0.0.1:9", seeded_history(tmp_path))
    app = run(page("tasks", task_id="redelivered"))
    runs = frame(app, "runs")
    assert runs["worker"].tolist() == [DEAD, ALIVE]
    assert links.task_faults() in texts(app)
    app = run(page("tasks", task_id="retried"))  # started twice, but retried in between
    assert "Started 2 times" in texts(app)
    app = run(page("tasks", task_id="done"))
    assert not tables(app, "runs")


def test_task_fault_alerts_lead_to_the_page() -> None:
    alert = Alert("CeleryTaskLost", "active", "critical", {"alertname": "CeleryTaskLost"},
                  "1 task lost", "", [])  # fmt: skip
    [found] = troubles([], [], [alert], current())
    assert links.task_faults() in found.what
    assert (links.TASK_FAULTS_TEXT, links.task_faults()) in links.alert_targets(alert.labels)
    other = Alert("CeleryQueueDepthWarning", "active", "warning", {}, "deep", "", [])
    assert links.task_faults() not in troubles([], [], [other], current())[0].what


def test_the_trap_counts_names_near_the_timeout_only_under_acks_late() -> None:
    fleet = faults.Fleet(
        visibility_timeout=VISIBILITY,
        acks_late=True,
        time_limits={"a": 2880.0, "b": 2879.0},
        running_longest={"c": 4000.0},
    )
    assert [n.name for n in faults.near_visibility_timeout(fleet)] == ["c", "a"]
    early = faults.Fleet(visibility_timeout=VISIBILITY, acks_late=False, time_limits={"a": 1e4})
    assert faults.near_visibility_timeout(early) == []
    assert fleet.redelivery_window == VISIBILITY + rules.REDELIVERY_GRACE_SECONDS
    assert early.redelivery_window == 0
    assert faults.Fleet().redelivery_window == rules.DEFAULT_REDELIVERY_WINDOW_SECONDS
    for hostile in (math.nan, math.inf, -1.0, None):
        assert duration_text(hostile) == "n/a"
        assert faults.count(hostile) is None
    assert duration_text(7200) == "2.0 h"
    assert faults.count_text(2.6) == "3"


def test_a_name_that_no_longer_runs_keeps_the_bound_of_its_time_limit() -> None:
    # A drained orphan's name has stopped running, so the exporter no longer publishes its
    # bound; its announced time limit still gives the one the exporter judged it by.
    fleet = faults.Fleet(
        stuck_bounds={"maintenance.probe": 3.0},
        time_limits={"maintenance.probe": 300.0, "images.process": 300.0},
    )
    assert fleet.bounds == {"maintenance.probe": 3.0, "images.process": 330.0}
    assert faults.Fleet().bounds == {}
