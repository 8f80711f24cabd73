"""The Beat page from the schedule: a real ``celery beat`` announces its schedule through Redis,
the real exporter turns it into metrics, a real Prometheus scrapes them, and the page (under
AppTest) lists every entry before its first run, then its runs, lateness and missed runs.

Beat here runs on its own small fleet (Redis, exporter, Prometheus, no worker): the shared
console fleet runs Beat every 2 s, which cannot show an entry that has not run yet."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from console import beat, links
from console.sources.prometheus import Prometheus
from fleetops.breaking_points import current
from tests.console.apptest import page, run, texts
from tests.dashboards.prometheus_server import PrometheusServer
from tests.exporter.process import ExporterProcess, run_exporter, value
from tests.helpers import wait_for
from tests.processes import Processes, processes_in
from tests.servers import CeleryProcess, RedisServer, run_beat

pytestmark = pytest.mark.slow

ENTRY = "due-soon-reminders"
TASK = "reminders.send_due_soon"


@dataclass
class BeatFleet:
    directory: Path
    redis: RedisServer
    exporter: ExporterProcess
    prometheus: PrometheusServer

    def env(self, interval: float) -> dict[str, str]:
        data = self.directory / "data"
        data.mkdir(exist_ok=True)
        return {
            "FLEETOPS_BROKER_URL": self.redis.url,
            "FLEETOPS_DATA_DIR": str(data),
            "FLEETOPS_REMINDER_INTERVAL_SECONDS": str(interval),
        }

    def entries(self) -> list[beat.BeatEntry]:
        return beat.entries(Prometheus(self.prometheus.url), current())


@pytest.fixture(scope="module")
def beat_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BeatFleet]:
    directory = tmp_path_factory.mktemp("beat-fleet")
    with processes_in(directory) as processes:
        redis = RedisServer(processes).start()
        exporter = run_exporter(processes, redis.url)
        prometheus = PrometheusServer(
            processes, targets={"fleetops-exporter": f"127.0.0.1:{exporter.port}"}
        ).start()
        yield BeatFleet(directory, redis, exporter, prometheus)


@pytest.fixture
def console_on(beat_fleet: BeatFleet, monkeypatch: pytest.MonkeyPatch) -> BeatFleet:
    """This process's console settings pointed at the small fleet (AppTest runs in-process)."""
    import os

    for key in [k for k in os.environ if k.startswith("FLEETOPS_")]:
        monkeypatch.delenv(key)
    env = {
        **beat_fleet.env(1),
        "FLEETOPS_PROMETHEUS_URL": beat_fleet.prometheus.url,
        "FLEETOPS_ALERTMANAGER_URL": "http://127.0.0.1:9",  # not read by the Beat page
        "FLEETOPS_HISTORY_DATABASE_URL": f"sqlite:///{beat_fleet.directory / 'history.db'}",
        "FLEETOPS_CONSOLE_PASSWORD": "correct horse battery staple",
    }
    for key, setting in env.items():
        monkeypatch.setenv(key, setting)
    return beat_fleet


def start_beat(processes: Processes, fleet: BeatFleet, interval: float) -> CeleryProcess:
    schedule = processes.run_dir / f"beat-schedule-{len(processes.children)}"
    return run_beat(processes, schedule, fleet.env(interval))


def test_an_entry_is_listed_before_its_first_run_then_with_its_missed_runs_once_beat_dies(
    console_on: BeatFleet, processes: Processes
) -> None:
    started = time.time()
    celery_beat = start_beat(processes, console_on, interval=3600)
    # A fresh entry first runs one interval after Beat starts: an hour from now.
    [entry] = wait_for(
        lambda: [
            e
            for e in console_on.entries()
            # Each number is its own Prometheus query: the next run may lag the interval by
            # one scrape.
            if e.name == ENTRY and e.interval == 3600 and e.next_run is not None
        ],
        timeout=60,
        message="Prometheus has the announced schedule",
    )
    assert started + 3600 - 5 <= entry.next_run <= time.time() + 3600
    assert entry.last_run is None and entry.task == TASK
    assert entry.late == 0 and entry.missed == 0
    samples = console_on.exporter.metrics()
    assert value(samples, "fleetops_beat_last_run_timestamp_seconds", name=ENTRY) is None
    assert "Sending due task" not in celery_beat.log()

    app = run(page("beat"))
    row = app.dataframe[0].value.set_index("periodic task").loc[ENTRY]
    assert row["last run"] == "never yet"
    assert row["due"] in ("in 60 min", "in 59 min")
    assert row["every (s)"] == 3600
    assert row["missed runs"] == 0
    assert row["task"] == links.tasks(name=TASK)
    assert not app.error
    celery_beat.stop()

    # The same entry (one exporter remembers it) every second, until Beat dies.
    celery_beat = start_beat(processes, console_on, interval=1)
    wait_for(
        lambda: [e for e in console_on.entries() if e.name == ENTRY and e.last_run is not None
                 and e.interval == 1],
        timeout=60,
        message="Prometheus has a run of the entry",
    )  # fmt: skip
    celery_beat.kill()
    grace = current().objectives.beat_missed_after_intervals
    # Late by more than the grace: counted as missed, as CeleryBeatMissedRun would.
    [entry] = wait_for(
        lambda: [e for e in console_on.entries() if e.name == ENTRY and e.missed],
        timeout=60,
        message="the entry counts as missed",
    )
    assert entry.late > grace - 1

    # The page reads Prometheus again, one number per query: wait until it too counts a miss.
    def missed_on_the_page() -> tuple | None:
        app = run(page("beat"))
        row = app.dataframe[0].value.set_index("periodic task").loc[ENTRY]
        return (app, row) if row["missed runs"] >= 1 else None

    app, row = wait_for(missed_on_the_page, timeout=30, message="the page counts a missed run")
    assert row["late (s)"] > 0
    assert str(row["due"]).startswith("late by")
    shown = texts(app)
    assert links.runbook("CeleryBeatMissedRun") in shown
    assert links.tasks(name=TASK) in shown
    assert "runs missed" in "\n".join(e.value for e in app.error)


def test_the_worst_entries_come_first_and_misses_count_as_the_alert_does() -> None:
    grace = 2.0
    assert beat.missed_runs(late=10.0, every=10.0, grace=grace) == 0  # 2 intervals since last
    assert beat.missed_runs(late=10.5, every=10.0, grace=grace) == 2
    assert beat.missed_runs(late=35.0, every=10.0, grace=grace) == 4
    assert beat.missed_runs(late=1e9, every=None, grace=grace) == 0
    made = [
        beat.BeatEntry("on-time", "t", 60.0, None, 2000.0, 0.0, 0),
        beat.BeatEntry("late", "t", 60.0, 900.0, 960.0, 40.0, 0),
        beat.BeatEntry("missed-once", "t", 60.0, 800.0, 860.0, 140.0, 3),
        beat.BeatEntry("missed-more", "t", 10.0, 900.0, 910.0, 90.0, 10),
    ]
    ordered = [e.name for e in sorted(made, key=lambda e: e.worst_first)]
    assert ordered == ["missed-more", "missed-once", "late", "on-time"]
    assert beat.due_text(made[0], now=1000.0) == "in 17 min"
    assert beat.due_text(made[1], now=1000.0) == "late by 40 s"
    assert beat.due_text(beat.BeatEntry("x", None, 1.0, None, 1000.4, 0.0, 0), 1000.0) == "due"


def test_absurd_numbers_from_prometheus_cannot_break_the_page() -> None:
    assert beat.missed_runs(late=1e308, every=1e-300, grace=2.0) == beat.MAX_MISSED
    assert beat.missed_runs(late=math.inf, every=1.0, grace=2.0) == beat.MAX_MISSED
    for stamp in (math.inf, -math.inf, math.nan, 1e300, -1e300):
        assert beat.when_text(stamp, "unknown") == "unknown"
    assert beat.when_text(0.0, "unknown") == "1970-01-01 00:00:00 UTC"
