"""Write batches of events: merge them in memory, then upsert tasks and workers in one
transaction. A batch is either written whole or not at all, so the caller may retry it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Engine

from exporters.history.merge import BatchMerger, Event, Limits
from exporters.history.upsert import execute, task_upsert, worker_upsert


@dataclass(frozen=True)
class WriteResult:
    events: int
    tasks: int
    workers: int
    ignored: int
    malformed: int


class HistoryWriter:
    def __init__(self, engine: Engine, limits: Limits | None = None) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.merger = BatchMerger(limits)
        self._tasks = task_upsert(self.dialect)
        self._workers = worker_upsert(self.dialect)

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
        if task_rows or worker_rows:
            with self.engine.begin() as connection:
                if task_rows:
                    execute(connection, self._tasks, task_rows)
                if worker_rows:
                    execute(connection, self._workers, worker_rows)
        result = WriteResult(
            count, len(task_rows), len(worker_rows), merger.ignored, merger.malformed
        )
        merger.clear()
        return result
