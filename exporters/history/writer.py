"""Write batches of events: merge them in memory, then upsert tasks and workers and insert the
runs in one transaction, one statement per table. A batch is either written whole or not at
all, so the caller may retry it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Engine

from exporters.history.merge import BatchMerger, Event, Limits
from exporters.history.upsert import execute, run_insert, task_upsert, worker_upsert


@dataclass(frozen=True)
class WriteResult:
    events: int
    tasks: int
    workers: int
    ignored: int
    malformed: int
    runs: int = 0


class HistoryWriter:
    def __init__(self, engine: Engine, limits: Limits | None = None) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.merger = BatchMerger(limits)
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
        if task_rows or worker_rows:
            with self.engine.begin() as connection:
                if task_rows:
                    execute(connection, self._tasks, task_rows)
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
        )
        merger.clear()
        return result
