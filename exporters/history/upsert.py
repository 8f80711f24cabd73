"""Upsert statements that merge a batch's rows into stored rows with the rule of merge.py.

Written with SQLAlchemy's ``on_conflict_do_update`` for PostgreSQL and SQLite alike; the
dialect differences are the name of the two-argument maximum (``greatest`` / ``max``) and how
rows travel: SQLite takes them through the driver's executemany (in-process, cheap per row);
PostgreSQL takes the whole batch as one JSON parameter unpacked by ``jsonb_to_recordset``, one
statement and one round trip per batch instead of one per row (measured: about 3x faster).

A task row belongs to the app that first wrote it: the update applies only when the stored row's
``app`` is the batch row's, so another app's events for the same task id change nothing (their
rows are missing from the statement's row count; writer.py counts them).

Runs (``history_task_runs``) are insert-only: a key already stored is skipped (``ON CONFLICT
DO NOTHING``), which is what makes replays and duplicates across batches add nothing.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, Table, Text, and_, case, func, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import bindparam, cast
from sqlalchemy.sql.dml import Insert

from exporters.history.merge import DESCRIPTIVE_FIELDS, LIFECYCLE_COLUMNS, TEXT_FIELDS
from exporters.history.schema import task_runs, tasks, workers


def _insert(dialect: str, table: Table) -> Any:
    if dialect == "postgresql":
        rows = func.jsonb_to_recordset(cast(bindparam("rows", type_=Text), postgresql.JSONB))
        source = rows.table_valued(*(column for column in table.columns)).render_derived(
            name="batch", with_types=True
        )
        names = [column.name for column in table.columns]
        return postgresql.insert(table).from_select(names, select(*source.c))
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise ValueError(f"history supports SQLite and PostgreSQL, not {dialect!r}")


def execute(connection: Connection, statement: Insert, rows: list[dict[str, Any]]) -> int:
    """Run an upsert of this module for a batch of complete rows; the rows it inserted or
    updated (a conflict the statement skips is not counted)."""
    if connection.dialect.name == "postgresql":
        # preserve_rowcount: SQLAlchemy reads the driver's row count only for UPDATE and
        # DELETE otherwise, and the writer needs it to see rows the upsert skipped.
        return connection.execute(
            statement,
            {"rows": orjson.dumps(rows).decode()},
            execution_options={"preserve_rowcount": True},
        ).rowcount
    # Compiled once, rows as plain tuples: SQLAlchemy's per-row parameter processing was a
    # fifth of SQLite's ingest time (profiled with bench/history.py --profile sqlite).
    sql, names = _compiled_sqlite(statement)
    result = connection.exec_driver_sql(
        sql,
        [tuple(row[name] for name in names) for row in rows],
        execution_options={"preserve_rowcount": True},
    )
    return result.rowcount


@cache
def _compiled_sqlite(statement: Insert) -> tuple[str, tuple[str, ...]]:
    compiled = statement.compile(dialect=sqlite.dialect())
    assert compiled.positiontup is not None
    return str(compiled), tuple(compiled.positiontup)


def _helpers(dialect: str, new: Any, old: Any) -> tuple[Any, Any]:
    greatest = func.greatest if dialect == "postgresql" else func.max

    def later(name: str) -> ColumnElement[Any]:
        # The maximum that ignores NULLs on both dialects (SQLite's max() returns NULL if any).
        a, b = new[name], old[name]
        return greatest(func.coalesce(a, b), func.coalesce(b, a))

    def first(name: str) -> ColumnElement[Any]:
        return func.coalesce(old[name], new[name])

    return later, first


@cache
def task_upsert(dialect: str) -> Insert:
    statement = _insert(dialect, tasks)
    new, old = statement.excluded, tasks.c
    later, first = _helpers(dialect, new, old)
    wins = tuple_(new.state_class, new.state_ts, new.state_rank) > tuple_(
        old.state_class, old.state_ts, old.state_rank
    )

    def winner(name: str) -> ColumnElement[Any]:
        return case((wins, new[name]), else_=old[name])

    update: dict[str, Any] = {
        name: winner(name) for name in ("state", "state_class", "state_ts", "state_rank")
    }
    update["timestamp"] = later("timestamp")
    update["retries"] = later("retries")
    for name in LIFECYCLE_COLUMNS:
        update[name] = later(name)
    for name in (*DESCRIPTIVE_FIELDS, *TEXT_FIELDS, "args", "kwargs", "result"):
        update[name] = first(name)
    update["worker"] = case(
        (and_(wins, new.worker.is_not(None)), new.worker), else_=first("worker")
    )
    new_exception = and_(wins, new.exception.is_not(None))
    for name in ("exception", "exception_type", "traceback"):
        update[name] = case((new_exception, new[name]), else_=first(name))
    update["runtime"] = func.coalesce(
        new.runtime, old.runtime, later("failed_at") - later("started_at")
    )
    return statement.on_conflict_do_update(
        index_elements=[tasks.c.task_id], set_=update, where=old.app == new.app
    )


@cache
def worker_upsert(dialect: str) -> Insert:
    statement = _insert(dialect, workers)
    new, old = statement.excluded, workers.c
    later, first = _helpers(dialect, new, old)
    least = func.least if dialect == "postgresql" else func.min
    newer_status = new.status_ts >= old.status_ts
    newer = new.last_seen >= old.last_seen
    update: dict[str, Any] = {
        "status": case((newer_status, new.status), else_=old.status),
        "status_ts": later("status_ts"),
        "first_seen": least(new.first_seen, old.first_seen),
        "last_seen": later("last_seen"),
    }
    for name in ("online_at", "offline_at", "heartbeat_at"):
        update[name] = later(name)
    for name in ("pid", "freq", "active", "processed", "pool_size", "rss_bytes",
                 "memory_limit_bytes", "memory_percent", "loadavg"):  # fmt: skip
        update[name] = case((and_(newer, new[name].is_not(None)), new[name]), else_=first(name))
    for name in ("sw_ident", "sw_ver", "sw_sys"):
        update[name] = func.coalesce(new[name], old[name])
    return statement.on_conflict_do_update(
        index_elements=[workers.c.hostname, workers.c.app], set_=update
    )


@cache
def run_insert(dialect: str) -> Insert:
    statement = _insert(dialect, task_runs)
    return statement.on_conflict_do_nothing(index_elements=list(task_runs.primary_key.columns))
