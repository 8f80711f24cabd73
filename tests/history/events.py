"""Celery events as the receiver decodes them, for building exact histories in tests."""

from __future__ import annotations

import uuid
from typing import Any

Event = dict[str, Any]
WORKER = "w1@127.0.0.1"


def task_lifecycle(
    task_id: str | None = None,
    *,
    name: str = "maintenance.probe",
    start: float = 1_700_000_000.0,
    outcome: str = "succeeded",
    args: str = "()",
    kwargs: str = "{'duration': 0.1}",
    worker: str = WORKER,
    queue: str = "maintenance",
) -> list[Event]:
    """sent -> received -> started -> succeeded/failed, 10 ms apart."""
    task_id = task_id or str(uuid.uuid4())
    events: list[Event] = [
        {"type": "task-sent", "uuid": task_id, "name": name, "args": args, "kwargs": kwargs,
         "queue": queue, "routing_key": queue, "exchange": "", "retries": 0,
         "root_id": task_id, "parent_id": None, "hostname": "gen1@client", "timestamp": start},
        {"type": "task-received", "uuid": task_id, "name": name, "args": args,
         "kwargs": kwargs, "retries": 0, "root_id": task_id, "hostname": worker,
         "timestamp": start + 0.01},
        {"type": "task-started", "uuid": task_id, "hostname": worker, "pid": 42,
         "timestamp": start + 0.02},
    ]  # fmt: skip
    if outcome == "succeeded":
        events.append(
            {"type": "task-succeeded", "uuid": task_id, "hostname": worker, "runtime": 0.01,
             "result": "0.1", "timestamp": start + 0.03}
        )  # fmt: skip
    elif outcome == "failed":
        events.append(
            {"type": "task-failed", "uuid": task_id, "hostname": worker,
             "exception": "ValueError('probe asked to fail')",
             "traceback": "Traceback (most recent call last):\n ...", "timestamp": start + 0.03}
        )  # fmt: skip
    return events


def worker_event(kind: str, hostname: str = WORKER, timestamp: float = 1_700_000_000.0,
                 **fields: Any) -> Event:  # fmt: skip
    event = {"type": f"worker-{kind}", "hostname": hostname, "timestamp": timestamp}
    event.update(fields)
    return event


def before_runs(events: list[Event]) -> list[Event]:
    """What a recorder from before history_task_runs (migration 0004) could write: its schema
    has no table for starts and retries. For a history written at an older revision, then
    upgraded."""
    return [event for event in events if event["type"] not in ("task-started", "task-retried")]


def write_before_apps(engine: Any, events: list[Event]) -> None:
    """Store events the way a recorder from before the ``app`` column (migration 0005) did:
    the same merged rows, into the tables as the database has them (read from it), without
    runs (they came with 0004). For a history written at an older revision, then upgraded."""
    from sqlalchemy import MetaData, Table

    from exporters.history.merge import BatchMerger
    from tests.stream.checked import checked

    merger = BatchMerger()
    merger.add_all(checked(before_runs(events)))
    with engine.begin() as connection:
        for name, rows in (("history_tasks", merger.tasks), ("history_workers", merger.workers)):
            if rows:
                table = Table(name, MetaData(), autoload_with=connection)
                connection.execute(
                    table.insert(),
                    [{k: v for k, v in row.items() if k in table.c} for row in rows.values()],
                )
