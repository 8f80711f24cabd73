"""Retention: drop task rows by age and by count, failures kept longer, and forget workers
not seen for the retention period. Deletes go in chunks so the console and the recorder never
wait long on a lock.

A task's runs (history_task_runs) go with its row, in the same transaction: they follow the
same rules (failures kept longer, the count bound) and a kept task keeps all its runs, even a
start older than the window of a task retried since. Runs older than the longest window are
removed on their own too, in chunks: those of a task row removed by other means.

Several recorders may share a database (docs/history.md, "Several recorders"). On PostgreSQL
one prunes at a time (a session advisory lock, tried, not waited for: the others skip that
round), and every delete skips rows another transaction holds (FOR UPDATE SKIP LOCKED), so
retention never waits on a writer's row lock: it cannot be one side of a deadlock with the
writers, who lock their rows in key order. A skipped row is old; the next round takes it.
SQLite has one writer at a time anyway, and ignores both."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Engine, delete, func, select, text, tuple_

from exporters.history.database import PRUNE_LOCK_KEY
from exporters.history.schema import task_runs, tasks, workers
from exporters.history.settings import HistorySettings
from fleetops.settings import field_default

FAILED = "FAILURE"
DAY = 86_400.0
# The oldest SQLite retention runs on: DELETE ... RETURNING came with 3.35 (docs/history.md).
SQLITE_MINIMUM = (3, 35)
# Task ids per delete of their runs. Every supported database takes far more bound parameters
# (SQLite >= 3.32: 32,766; PostgreSQL: 65,535), so at the default chunk of 10,000 a chunk's
# runs go in one statement; only a larger chunk is sliced.
RUN_IDS_PER_DELETE = 10_000


@dataclass(frozen=True)
class RetentionPolicy:
    """What prune keeps: each bound is the setting FLEETOPS_HISTORY_<FIELD>, and its default."""

    retention_days: float = field_default(HistorySettings, "history_retention_days")
    failed_retention_days: float = field_default(HistorySettings, "history_failed_retention_days")
    max_rows: int = field_default(HistorySettings, "history_max_rows")
    max_failed_rows: int = field_default(HistorySettings, "history_max_failed_rows")


@dataclass(frozen=True)
class PruneResult:
    by_age: int
    by_count: int
    workers: int
    # Runs removed, with their tasks or (older than every window) on their own.
    runs: int = 0
    # True when another process was pruning this database: this round did nothing.
    skipped: bool = False

    @property
    def total(self) -> int:
        return self.by_age + self.by_count


def prune(
    engine: Engine, policy: RetentionPolicy, *, now: float | None = None, chunk: int = 10_000
) -> PruneResult:
    now = time.time() if now is None else now
    with _only_pruner(engine) as alone:
        if not alone:
            return PruneResult(0, 0, 0, skipped=True)
        others, failed = tasks.c.state != FAILED, tasks.c.state == FAILED
        by_age = _delete_older(engine, others, now - policy.retention_days * DAY, chunk)
        by_age += _delete_older(engine, failed, now - policy.failed_retention_days * DAY, chunk)
        by_count = _delete_beyond(engine, others, policy.max_rows, chunk)
        by_count += _delete_beyond(engine, failed, policy.max_failed_rows, chunk)
        longest = max(policy.retention_days, policy.failed_retention_days)
        stray_runs = _delete_old_runs(engine, now - longest * DAY, chunk)
        unseen_since = workers.c.last_seen < now - policy.retention_days * DAY
        unseen = select(workers.c.hostname).where(unseen_since).with_for_update(skip_locked=True)
        with engine.begin() as connection:
            # The age again outside: a host name is a worker of each app it runs (the key is
            # hostname and app), and another app's worker there may still be alive.
            listed = workers.c.hostname.in_(unseen.scalar_subquery())
            gone = connection.execute(delete(workers).where(listed, unseen_since)).rowcount
    runs = by_age.runs + by_count.runs + stray_runs
    return PruneResult(by_age.tasks, by_count.tasks, gone, runs)


@contextlib.contextmanager
def _only_pruner(engine: Engine) -> Iterator[bool]:
    """Whether this process may prune now: on PostgreSQL, holds the prune lock for the block
    (released with the session if the process dies); SQLite: always."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    with engine.connect() as connection:
        taken = connection.execute(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": PRUNE_LOCK_KEY}
        ).scalar()
        connection.commit()
        try:
            yield bool(taken)
        finally:
            if taken:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PRUNE_LOCK_KEY})
                connection.commit()


@dataclass
class Removed:
    tasks: int = 0
    runs: int = 0

    def __iadd__(self, other: Removed) -> Removed:
        self.tasks += other.tasks
        self.runs += other.runs
        return self


def _delete_older(engine: Engine, which: object, cutoff: float, chunk: int) -> Removed:
    return _delete_chunks(engine, which, tasks.c.timestamp < cutoff, chunk)


def _delete_beyond(engine: Engine, which: object, keep: int, chunk: int) -> Removed:
    """Keep the newest ``keep`` rows matching ``which``; delete the rest."""
    with engine.connect() as connection:
        cutoff = connection.execute(
            select(tasks.c.timestamp)
            .where(which)  # type: ignore[arg-type]
            .order_by(tasks.c.timestamp.desc())
            .offset(keep)
            .limit(1)
        ).scalar()
    if cutoff is None:
        return Removed()
    return _delete_chunks(engine, which, tasks.c.timestamp <= cutoff, chunk)


def _delete_chunks(engine: Engine, which: object, older: object, chunk: int) -> Removed:
    removed = Removed()
    while True:
        ids = (
            select(tasks.c.task_id)
            .where(which, older)  # type: ignore[arg-type]
            .order_by(tasks.c.timestamp)
            .limit(chunk)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        with engine.begin() as connection:
            gone = (
                connection.execute(
                    delete(tasks).where(tasks.c.task_id.in_(ids)).returning(tasks.c.task_id)
                )
                .scalars()
                .all()
            )
            # Found by the primary key's leading column: one index probe per task. In slices
            # of RUN_IDS_PER_DELETE ids, within any supported database's parameter limit.
            for start in range(0, len(gone), RUN_IDS_PER_DELETE):
                ids_slice = gone[start : start + RUN_IDS_PER_DELETE]
                removed.runs += connection.execute(
                    delete(task_runs).where(task_runs.c.task_id.in_(ids_slice))
                ).rowcount
        removed.tasks += len(gone)
        if len(gone) < chunk:
            return removed


def _delete_old_runs(engine: Engine, cutoff: float, chunk: int) -> int:
    """Runs older than every window, oldest first, ``chunk`` at a time (by the index on
    ``at``); rows a writer holds are skipped, as for tasks."""
    key = tuple_(*task_runs.primary_key.columns)
    removed = 0
    while True:
        keys = (
            select(*task_runs.primary_key.columns)
            .where(task_runs.c.at < cutoff)
            .order_by(task_runs.c.at)
            .limit(chunk)
            .with_for_update(skip_locked=True)
        )
        with engine.begin() as connection:
            count = connection.execute(delete(task_runs).where(key.in_(keys))).rowcount
        removed += count
        if count < chunk:
            return removed


def row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(select(tasks.c.state, func.count()).group_by(tasks.c.state)).all()
    counts = {"failed": 0, "other": 0}
    for state, count in rows:
        counts["failed" if state == FAILED else "other"] += count
    return counts
