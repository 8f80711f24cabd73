"""Runs of a task (history_task_runs): one row per start and per planned retry, so a task that
ran twice keeps both runs. Insert-only and idempotent under replays and duplicates, on SQLite
and PostgreSQL; a run the database refuses costs only its own event; pruned with the tasks
they belong to. Last, the real thing: a worker SIGKILLed mid-task, the task run again by a
second worker, seen by a real recorder process as two starts."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from celery import Celery
from sqlalchemy import Engine, insert, inspect, select
from sqlalchemy import event as sa_event

from exporters.history import migrate, retention
from exporters.history.buffer import Batch
from exporters.history.database import create_history_engine
from exporters.history.recorder import Recorder
from exporters.history.retention import DAY, RetentionPolicy, prune
from exporters.history.schema import task_runs, tasks, workers
from exporters.history.writer import HistoryWriter
from exporters.stream.events import Checker, Rejected
from tests.helpers import wait_for
from tests.history.events import WORKER, task_lifecycle
from tests.history.recording import history_settings, metric, start_recorder, task_states
from tests.processes import Processes
from tests.servers import CeleryProcess, RedisServer

NAME, QUEUE = "maintenance.probe", "maintenance"
RESCUER = "w2@127.0.0.1"

Run = tuple[str, float, str, str | None, str | None]  # kind, at, worker, name, queue


def runs_of(engine: Engine, task_id: str) -> list[Run]:
    columns = task_runs.c
    query = (
        select(columns.kind, columns.at, columns.worker, columns.name, columns.queue)
        .where(columns.task_id == task_id)
        .order_by(columns.at, columns.kind, columns.worker)
    )
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]  # type: ignore[misc]


def all_runs(engine: Engine) -> set[tuple[str, str, float]]:
    with engine.connect() as connection:
        query = select(task_runs.c.task_id, task_runs.c.kind, task_runs.c.at)
        return {tuple(row) for row in connection.execute(query)}  # type: ignore[misc]


def retried_then_succeeded(task_id: str, start: float, worker: str = WORKER) -> list[dict]:
    """Sent, received, started, retried (a planned retry), received again, started again on
    the same worker, succeeded."""
    first = task_lifecycle(task_id, start=start, outcome="none", worker=worker)
    return [
        *first,
        {"type": "task-retried", "uuid": task_id, "hostname": worker,
         "exception": "TransientError('later')", "timestamp": start + 1.0},
        {"type": "task-received", "uuid": task_id, "name": NAME, "retries": 1,
         "hostname": worker, "timestamp": start + 2.0},
        {"type": "task-started", "uuid": task_id, "hostname": worker, "timestamp": start + 2.01},
        {"type": "task-succeeded", "uuid": task_id, "hostname": worker, "runtime": 0.01,
         "timestamp": start + 2.02},
    ]  # fmt: skip


def test_starts_and_planned_retries_are_runs_and_replays_add_none(engine: Engine) -> None:
    writer = HistoryWriter(engine)
    start = time.time() - 600
    events = retried_then_succeeded("retried", start)
    expected = [
        ("started", start + 0.02, WORKER, NAME, QUEUE),
        ("retried", start + 1.0, WORKER, NAME, QUEUE),
        ("started", start + 2.01, WORKER, NAME, QUEUE),
    ]
    # Every event twice in one batch: the insert would be refused if a key went in twice.
    result = writer.write(events + events[::-1])
    assert result.runs == 3
    assert runs_of(engine, "retried") == expected
    # Replayed whole, then event by event (as the recorder isolates a refused batch): a start
    # alone names no task, but its key is stored already and nothing changes.
    writer.write(events)
    for event in events:
        writer.write([event])
    assert runs_of(engine, "retried") == expected
    with engine.connect() as connection:
        assert connection.execute(select(tasks.c.state)).scalars().all() == ["SUCCESS"]


def test_a_task_started_twice_keeps_both_runs(engine: Engine) -> None:
    """Redelivered after its worker died: started on one worker, then on another, each in a
    batch of its own. Where the batch does not name the queue (a task-received does not),
    the run's queue is NULL; the task row has it."""
    writer = HistoryWriter(engine)
    start = time.time() - 600
    first = task_lifecycle("twice", start=start, outcome="none")
    again = [
        {"type": "task-received", "uuid": "twice", "name": NAME, "hostname": RESCUER,
         "timestamp": start + 10.0},
        {"type": "task-started", "uuid": "twice", "hostname": RESCUER, "timestamp": start + 10.1},
        {"type": "task-succeeded", "uuid": "twice", "hostname": RESCUER, "runtime": 1.0,
         "timestamp": start + 11.1},
    ]  # fmt: skip
    # Two workers starting it in the same instant, in one batch, are two runs.
    same_instant = {"type": "task-started", "uuid": "twice", "hostname": "w3@127.0.0.1",
                    "timestamp": start + 0.02}  # fmt: skip
    writer.write([*first, same_instant])
    writer.write(again)
    # An event naming no worker gives "" (part of the key, never NULL).
    writer.write([{"type": "task-started", "uuid": "twice", "timestamp": start + 12.0}])
    assert runs_of(engine, "twice") == [
        ("started", start + 0.02, WORKER, NAME, QUEUE),
        ("started", start + 0.02, "w3@127.0.0.1", NAME, QUEUE),
        ("started", start + 10.1, RESCUER, NAME, None),
        ("started", start + 12.0, "", None, None),
    ]
    # What the task row says is unchanged by the runs: its latest attempt, on the rescuer.
    with engine.connect() as connection:
        row = connection.execute(select(tasks).where(tasks.c.task_id == "twice")).one()
    assert (row.state, row.worker, row.queue) == ("SUCCESS", RESCUER, QUEUE)


def test_hostile_task_ids_and_worker_names_are_bounded_before_they_reach_a_run(
    engine: Engine,
) -> None:
    """The checks bound both key texts to the columns' 255 characters (PostgreSQL would
    refuse longer); a task id is refused rather than cut, since a cut id is another task."""
    checker = Checker()
    now = time.time()
    with_huge = {"type": "task-started", "uuid": "u" * 10_000, "hostname": "w", "timestamp": now}
    try:
        checker.check(with_huge, now)
    except Rejected as exc:
        assert exc.reason == "bad_field"
    else:
        raise AssertionError("a 10,000-character task id was accepted")
    hosts = ["h" * 100_000, "ü\x00" * 5_000, "\udcff" * 300]
    events = [
        checker.check({"type": "task-started", "uuid": f"t{n}", "hostname": host,
                       "timestamp": now}, now)
        for n, host in enumerate(hosts)
    ]  # fmt: skip
    assert HistoryWriter(engine).write(events).runs == 3
    for n in range(len(hosts)):
        ((_kind, _at, worker, _name, _queue),) = runs_of(engine, f"t{n}")
        assert 0 < len(worker) <= 255, len(worker)


def refuse_runs_of(database_url: str, task_id: str) -> Engine:
    """A real refusal by the database, of one task's runs only: an SQLite trigger."""
    engine = create_history_engine(database_url)

    @sa_event.listens_for(engine, "connect")
    def _trigger(connection: Any, _record: Any) -> None:
        connection.execute(
            f"CREATE TEMP TRIGGER IF NOT EXISTS refuse_{task_id} BEFORE INSERT ON"
            f" main.{task_runs.name} WHEN NEW.task_id = '{task_id}'"
            " BEGIN SELECT RAISE(ABORT, 'run refused'); END"
        )

    return engine


def test_a_run_the_database_refuses_costs_only_its_own_event(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'history.db'}"
    settings = history_settings("redis://127.0.0.1:1/0", database, tmp_path)
    migrating = create_history_engine(database)
    migrate.upgrade(migrating)  # the trigger needs the table
    migrating.dispose()
    engine = refuse_runs_of(database, "poison")
    recorder = Recorder(settings, engine=engine)
    try:
        start = time.time() - 600
        events = [*task_lifecycle("good-1", start=start), *task_lifecycle("poison", start=start),
                  *task_lifecycle("good-2", start=start)]  # fmt: skip
        recorder._write(Batch(events))
        assert metric(recorder, "fleetops_history_events_quarantined_total") == 1
        assert metric(recorder, "fleetops_history_events_written_total") == len(events) - 1
        # The poisoned task keeps its row from its other events; only its start is set aside.
        assert task_states(database) == {"good-1": "SUCCESS", "poison": "SUCCESS",
                                         "good-2": "SUCCESS"}  # fmt: skip
        assert {task_id for task_id, _kind, _at in all_runs(engine)} == {"good-1", "good-2"}
        kept = [orjson.loads(line) for path in settings.effective_quarantine_dir.glob("*.jsonl")
                for line in path.read_bytes().splitlines()]  # fmt: skip
        assert [(k["event"]["type"], k["event"]["uuid"]) for k in kept] == [
            ("task-started", "poison")
        ]
        assert "run refused" in kept[0]["reason"]
    finally:
        engine.dispose()
        recorder.spool_lock.release()


def test_runs_go_with_their_task_and_none_outlives_every_window(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = time.time()
    writer = HistoryWriter(engine)
    writer.write(task_lifecycle("old", start=now - 10 * DAY))
    writer.write(task_lifecycle("old-2", start=now - 10 * DAY + 1))
    writer.write(task_lifecycle("old-failure", start=now - 10 * DAY, outcome="failed"))
    writer.write(task_lifecycle("ancient-failure", start=now - 40 * DAY, outcome="failed"))
    # First started ten days ago, retried and started again since: a kept task keeps every run.
    writer.write(retried_then_succeeded("retried-since", now - 10 * DAY)[:-3])
    writer.write(retried_then_succeeded("retried-since", now - 3600)[-3:])
    writer.write(task_lifecycle("newest", start=now - 60))
    with engine.begin() as connection:
        # Runs whose task row is gone (removed by hand, say): only past every window.
        connection.execute(insert(task_runs), [
            {"task_id": "stray-old", "kind": "started", "at": now - 31 * DAY, "worker": ""},
            {"task_id": "stray-old", "kind": "started", "at": now - 35 * DAY, "worker": "w"},
            {"task_id": "stray-old", "kind": "retried", "at": now - 33 * DAY, "worker": "w"},
            {"task_id": "stray-recent", "kind": "started", "at": now - 10 * DAY, "worker": ""},
        ])  # fmt: skip
    policy = RetentionPolicy(retention_days=7, failed_retention_days=30)
    # Small chunks, and the runs of a chunk's tasks deleted one task id at a time: every loop
    # of bounded deletes goes round until done.
    monkeypatch.setattr(retention, "RUN_IDS_PER_DELETE", 1)
    result = prune(engine, policy, now=now, chunk=2)
    assert (result.by_age, result.runs) == (3, 6)
    assert {task_id for task_id, _kind, _at in all_runs(engine)} == {
        "old-failure",
        "retried-since",
        "newest",
        "stray-recent",
    }
    assert len(runs_of(engine, "retried-since")) == 3
    # By count: of the tasks not failed, only the newest is kept, and only its runs.
    result = prune(engine, RetentionPolicy(max_rows=1), now=now, chunk=1)
    assert (result.by_count, result.runs) == (1, 3)
    assert {task_id for task_id, _kind, _at in all_runs(engine)} == {
        "old-failure",
        "newest",
        "stray-recent",
    }


# ---- a real fleet --------------------------------------------------------------------------


def stored(database_url: str, read: Callable[[Engine], Any], default: Any) -> Any:
    """What ``read`` finds, or ``default`` until the recorder has created its tables."""
    engine = create_history_engine(database_url)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table(task_runs.name):
                return default
        return read(engine)
    finally:
        engine.dispose()


def worker_names(database_url: str) -> set[str]:
    def read(engine: Engine) -> set[str]:
        with engine.connect() as connection:
            return set(connection.execute(select(workers.c.hostname)).scalars())

    return stored(database_url, read, set())


def starts(database_url: str, task_id: str) -> list[str]:
    """The workers that started the task, oldest start first."""
    runs = stored(database_url, lambda engine: runs_of(engine, task_id), [])
    return [worker for kind, _at, worker, _name, _queue in runs if kind == "started"]


def test_a_task_of_a_sigkilled_worker_run_again_elsewhere_has_both_starts(
    redis_server: RedisServer,
    processes: Processes,
    start_worker: Callable[..., CeleryProcess],
    tmp_path: Path,
) -> None:
    database = f"sqlite:///{tmp_path / 'history.db'}"
    recorder = start_recorder(processes, "recorder", redis_server.url, database, wait=False)
    victim = start_worker(queues="maintenance", name=f"victim-{uuid.uuid4().hex[:6]}",
                          concurrency=1)  # fmt: skip
    recorder.child.wait_ready()
    # Subscribed and writing: the victim's heartbeats (every 2 s) reach the database.
    wait_for(lambda: recorder.child.alive() and victim.hostname in worker_names(database),
             timeout=60, message="the recorder writing the victim's events")  # fmt: skip
    client = Celery("runs-test", broker=redis_server.url, set_as_current=False)
    try:
        task_id = client.send_task(
            "maintenance.probe", kwargs={"duration": 3.0}, queue="maintenance"
        ).id
    finally:
        client.close()
    wait_for(lambda: recorder.child.alive() and starts(database, task_id) == [victim.hostname],
             timeout=60, message="the task started on the victim")  # fmt: skip
    victim.kill(signal.SIGKILL)
    # acks_late: Redis hands the unacknowledged message back after the visibility timeout
    # (6 s in tests), and the rescuer runs it to the end.
    rescuer = start_worker(queues="maintenance", name=f"rescuer-{uuid.uuid4().hex[:6]}",
                           concurrency=1)  # fmt: skip

    def finished() -> bool:
        recorder.child.alive()
        rescuer.child.alive()
        return task_states(database).get(task_id) == "SUCCESS"

    wait_for(finished, timeout=90, message="the task finished on the rescuer")
    wait_for(lambda: len(starts(database, task_id)) >= 2, timeout=30, message="both starts")
    assert starts(database, task_id) == [victim.hostname, rescuer.hostname]
    assert recorder.child.stop() == 0, recorder.child.log()[-3000:]
