"""Write batches of events: merge them in memory, then upsert tasks and workers and insert the
runs in one transaction, one statement per table. A batch is either written whole or not at
all, so the caller may retry it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select

from exporters.history.merge import BatchMerger, Event, Limits
from exporters.history.schema import tasks
from exporters.history.upsert import execute, run_insert, task_upsert, worker_upsert
from fleetops.apps import DEFAULT_APP


@dataclass(frozen=True)
class WriteResult:
    events: int
    tasks: int
    workers: int
    ignored: int
    malformed: int
    runs: int = 0
    # Events for a task id that another app's events had already claimed: not stored.
    foreign: int = 0


class HistoryWriter:
    def __init__(
        self, engine: Engine, limits: Limits | None = None, default_app: str = DEFAULT_APP
    ) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.merger = BatchMerger(limits, default_app)
        self._tasks = task_upsert(self.dialect)
        self._workers = worker_upsert(self.dialect)
        self._runs = run_insert(self.dialect)

    def write(self, events: Iterable[Event]) -> WriteResult:
        merger = self.merger
        merger.clear()
        count = 0
        for event in events:
            merger.add(event)
            count += 1
        # Sorted keys: two recorders writing the same tasks lock rows in the same order and
        # cannot deadlock each other on PostgreSQL.
        task_rows = [merger.tasks[key] for key in sorted(merger.tasks)]
        worker_rows = [merger.workers[key] for key in sorted(merger.workers)]
        run_rows = merger.run_rows()
        foreign = merger.foreign
        if task_rows or worker_rows:
            with self.engine.begin() as connection:
                if task_rows and execute(connection, self._tasks, task_rows) < len(task_rows):
                    # Rare (a task id claimed by two apps): only then look for the rows.
                    taken = _claimed_by_another_app(connection, task_rows)
                    foreign += len(taken)
                    run_rows = [row for row in run_rows if row["task_id"] not in taken]
                if worker_rows:
                    execute(connection, self._workers, worker_rows)
                # After the tasks: a run's task row exists once the batch is committed.
                if run_rows:
                    execute(connection, self._runs, run_rows)
        result = WriteResult(
            count,
            len(task_rows),
            len(worker_rows),
            merger.ignored,
            merger.malformed,
            len(run_rows),
            foreign,
        )
        merger.clear()
        return result


def _claimed_by_another_app(connection: Connection, rows: list[dict[str, Any]]) -> set[str]:
    """The task ids of ``rows`` stored under another app than the row's."""
    apps = {row["task_id"]: row["app"] for row in rows}
    stored = connection.execute(
        select(tasks.c.task_id, tasks.c.app).where(tasks.c.task_id.in_(list(apps)))
    ).all()
    return {task_id for task_id, app in stored if apps[task_id] != app}
