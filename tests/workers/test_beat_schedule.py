"""A real ``celery beat`` announces its whole schedule as ``beat-schedule`` events: every entry
with its next expected run before the first, after a restart the last run its persistent
schedule file kept, and for an entry whose sends fail a next run that stops moving."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from celery.beat import ScheduleEntry
from celery.schedules import crontab

from fleetops.fleet.spec import ProcessSpec
from tests.helpers import wait_for
from tests.processes import REPO, Processes
from tests.servers import CELERY_READY_TIMEOUT, CeleryProcess, run_beat
from workers.beat import describe

ENTRY = "due-soon-reminders"


class Announcements:
    """Every beat-schedule (and beat-sent) event on the broker, read by a plain Celery event
    receiver."""

    def __init__(self, broker_url: str) -> None:
        self.app = Celery(broker=broker_url)
        self.found: list[dict] = []
        self.sent: list[dict] = []
        self.receiver = None
        ready = threading.Event()
        self.thread = threading.Thread(target=self._collect, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10), "the event receiver did not start"

    def _collect(self, ready: threading.Event) -> None:
        with self.app.connection_for_read() as conn:
            self.receiver = self.app.events.Receiver(
                conn, handlers={"beat-schedule": self.found.append, "beat-sent": self.sent.append}
            )
            ready.set()
            # Woken every second to see whether the test is done: the receiver must be gone
            # before Redis stops, or its thread dies on a refused connection.
            while not self.receiver.should_stop:
                with contextlib.suppress(TimeoutError):
                    self.receiver.capture(limit=None, timeout=1, wakeup=False)

    def entry(self, since: float, name: str = ENTRY) -> dict | None:
        """The entry as announced by the newest event sent after ``since``."""
        for event in reversed(self.found):
            if event["timestamp"] >= since:
                return next((e for e in event["entries"] if e["name"] == name), None)
        return None

    def history(self, name: str, since: float) -> list[dict]:
        """The entry as announced by every event sent after ``since``, oldest first."""
        return [
            entry
            for event in list(self.found)
            if event["timestamp"] >= since
            for entry in event["entries"]
            if entry["name"] == name
        ]

    def close(self) -> None:
        if self.receiver is not None:
            self.receiver.should_stop = True
        self.thread.join(10)


@pytest.fixture
def announcements(fleet_env: dict[str, str]) -> Iterator[Announcements]:
    listening = Announcements(fleet_env["FLEETOPS_BROKER_URL"])
    yield listening
    listening.close()


def test_beat_announces_each_entry_before_its_first_run_and_its_last_run_after_a_restart(
    fleet_env: dict[str, str],
    processes: Processes,
    announcements: Announcements,
    tmp_path: Path,
) -> None:
    schedule = tmp_path / "beat-schedule"

    def beat(interval: float) -> CeleryProcess:
        env = {**fleet_env, "FLEETOPS_REMINDER_INTERVAL_SECONDS": str(interval)}
        return run_beat(processes, schedule, env)

    started = time.time()
    first = beat(3600)
    fresh = wait_for(lambda: announcements.entry(started), timeout=60, message="an announcement")
    assert fresh["task"] == "reminders.send_due_soon"
    assert fresh["interval_seconds"] == 3600
    # A fresh interval entry runs one interval after Beat loads it: not yet, but announced.
    assert started + 3600 - 5 <= fresh["next_run"] <= time.time() + 3600
    assert fresh["last_run"] is None and fresh["total_run_count"] == 0
    event = announcements.found[-1]
    assert event["entries_total"] == len(event["entries"]) >= 1
    assert event["hostname"].startswith("beat@")
    first.stop()

    # Runs every second, then stops; its schedule file keeps the runs.
    quick_from = time.time()
    quick = beat(1)
    wait_for(lambda: quick.log().count(f"Sending due task {ENTRY}") >= 3, timeout=60,
             message="three runs")  # fmt: skip
    quick.stop()
    stopped = time.time()

    # Each run is announced again (the periodic announcement, every 30 s, could not see both
    # the first and the second of runs a second apart).
    def counts() -> set[int]:
        return {
            entry["total_run_count"]
            for event in list(announcements.found)
            if event["timestamp"] >= quick_from
            for entry in event["entries"]
        }

    # Waited for: the receiver thread may still be reading the last announcements.
    wait_for(lambda: {1, 2} <= counts(), timeout=30, message="an announcement after each run")

    # Back with an hour's interval: the last run comes from the file, the next one follows it.
    restarted_at = time.time()
    beat(3600)
    kept = wait_for(lambda: announcements.entry(restarted_at), timeout=60, message="re-announced")
    assert kept["total_run_count"] >= 2
    assert started < kept["last_run"] <= stopped
    assert kept["next_run"] == pytest.approx(kept["last_run"] + 3600, abs=1)


def test_a_crontab_entry_is_announced_with_its_period_and_next_run() -> None:
    app = Celery()
    app.conf.timezone = "UTC"
    for schedule, period in ((crontab(minute="*/5"), 300), (crontab(minute=0, hour=4), 86_400)):
        entry = ScheduleEntry(name="cron", task="t", schedule=schedule, app=app)
        now = time.time()
        described = describe(entry, now)
        # The gap between two runs, not the time left to the next one.
        assert described["interval_seconds"] == pytest.approx(period, abs=1)
        assert now <= described["next_run"] <= now + period + 1
        assert round(described["next_run"]) % 300 == 0  # on a boundary of the schedule
        assert described["last_run"] is None


FAILING = "never-sent"
# The fleet's schedule plus one entry whose every send fails for real: a set is no JSON, so
# kombu refuses to serialise its message at publish (as a task given a wrong argument would).
FAILING_APP = f"""
from workers.app import app

app.conf.beat_schedule = {{
    **app.conf.beat_schedule,
    {FAILING!r}: {{"task": "reminders.send_due_soon", "schedule": 1.0, "args": ({{1, 2}},)}},
}}
"""


def test_an_entry_whose_sends_fail_keeps_its_first_failed_due_time_as_next_run(
    fleet_env: dict[str, str],
    processes: Processes,
    announcements: Announcements,
    tmp_path: Path,
) -> None:
    (tmp_path / "failing_beat_app.py").write_text(FAILING_APP)
    env = {**fleet_env, "FLEETOPS_REMINDER_INTERVAL_SECONDS": "1",
           "PYTHONPATH": f"{tmp_path}:{REPO}"}  # fmt: skip
    argv = [sys.executable, "-m", "celery", "-A", "failing_beat_app",
            "beat", "--loglevel=INFO", "-s", str(tmp_path / "beat-schedule")]  # fmt: skip
    started = time.time()
    beat = CeleryProcess(
        "beat", "beat",
        processes.start(ProcessSpec("beat", argv, ready_timeout=CELERY_READY_TIMEOUT), env,
                        label="beat with a failing entry", ready_log="beat: Starting"),
    )  # fmt: skip

    fresh = wait_for(lambda: announcements.entry(started, FAILING), timeout=60,
                     message="the failing entry announced")  # fmt: skip
    assert fresh["last_run"] is None
    wait_for(lambda: beat.log().count("Message Error") >= 3, timeout=30,
             message="three failed sends")  # fmt: skip
    failed_three_times = time.time()
    # Announced within a second of a send, failed or not: two announcements after the third.
    wait_for(lambda: len(announcements.history(FAILING, failed_three_times)) >= 2, timeout=30,
             message="announcements after the failed sends")  # fmt: skip

    # Every announcement, before the first send and after each failed one, names the same
    # next run: the due time of the first failed send. So the missed-run alert counts from it.
    first_due = fresh["next_run"]
    assert started < first_due < failed_three_times
    for announced in announcements.history(FAILING, started):
        assert announced["next_run"] == pytest.approx(first_due, abs=0.5)
        assert announced["last_run"] is None
    assert FAILING not in {event["name"] for event in list(announcements.sent)}

    # The healthy entry beside it is sent and its next run keeps moving.
    healthy = announcements.history(ENTRY, failed_three_times)
    assert healthy[-1]["next_run"] > first_due + 2
    assert healthy[-1]["last_run"] is not None and healthy[-1]["last_run"] > started
    assert ENTRY in {event["name"] for event in list(announcements.sent)}
