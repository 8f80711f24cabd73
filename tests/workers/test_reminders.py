"""Reminders are sent exactly once per item, even when two runs race, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from tests.helpers import wait_for
from workers.db import engine_for
from workers.reminders.models import Item, Reminder
from workers.reminders.service import add_item, send_due_soon


def _seed(url: str, due: int, later: int) -> None:
    factory = sessionmaker(engine_for(url))
    now = datetime.now(UTC)
    with factory() as session, session.begin():
        for n in range(due):
            add_item(session, f"due {n}", now + timedelta(minutes=10 + n))
        for n in range(later):
            add_item(session, f"later {n}", now + timedelta(days=3 + n))


def _race(url: str, runs: int) -> list[int]:
    factory = sessionmaker(engine_for(url))
    barrier = threading.Barrier(runs)
    results: list[int] = []

    def run(n: int) -> None:
        with factory() as session:
            barrier.wait()
            results.append(send_due_soon(session, timedelta(hours=1), sender=f"run-{n}"))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def _reminder_count(url: str) -> int:
    with sessionmaker(engine_for(url))() as session:
        return session.scalar(select(func.count()).select_from(Reminder))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_runs_send_each_reminder_once(backend, tmp_path, request):
    url = (
        f"sqlite:///{tmp_path / 'reminders.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    _seed(url, due=25, later=5)
    results = _race(url, runs=2)
    assert sum(results) == 25
    assert _reminder_count(url) == 25
    assert _race(url, runs=2) == [0, 0]  # nothing left to remind of


def test_beat_schedules_reminders_and_two_workers_send_each_once(
    fleet_env, start_worker, start_beat
):
    url = fleet_env["FLEETOPS_DATABASE_URL"]
    _seed(url, due=10, later=3)
    start_worker(queues="reminders", name="reminders-a", concurrency=2)
    start_worker(queues="reminders", name="reminders-b", concurrency=2)
    beat = start_beat()
    wait_for(lambda: _reminder_count(url) == 10, timeout=60, message="ten reminders sent")
    # Several more scheduled runs happen (every 2 s in tests) and send nothing twice.
    wait_for(
        lambda: beat.log().count("Scheduler: Sending due task due-soon-reminders") >= 3,
        timeout=60, message="three scheduled runs",
    )  # fmt: skip
    assert _reminder_count(url) == 10
    with sessionmaker(engine_for(url))() as session:
        assert session.scalar(select(func.count()).select_from(Item)) == 13
