"""Read the task history: the console's Tasks, Task detail and Failures pages and the
``fleetops history`` commands use these functions, never SQL of their own.

This is the history's public read API; the console (console/sources/history.py) calls it, so
the names, parameters and returned columns below are a contract (pinned by
tests/history/test_store.py::test_the_console_api_is_stable). Every function takes an
``Engine`` from ``database.create_history_engine`` first and raises SQLAlchemy errors when the
database is down; the caller decides how to show that.

Every search is newest first and limited, so it is served by an index scan that stops early
(see the indexes in schema.py); results are pandas DataFrames whose time columns are
timezone-aware UTC ``datetime64`` values (NaT when the event was not seen).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine, func, literal_column, or_, select

from exporters.history import text_index
from exporters.history.schema import FAILED_STATE, LIFECYCLE_COLUMNS, tasks, workers
from exporters.history.settings import RECENT_WINDOW

TIME_COLUMNS = (*LIFECYCLE_COLUMNS, "timestamp")
LIST_COLUMNS = (
    "task_id", "name", "state", "queue", "worker", "retries", "args", "kwargs",
    "exception_type", "exception", "runtime", "received_at", "started_at", "timestamp",
)  # fmt: skip
TIMELINE = (
    ("sent", "sent_at"),
    ("received", "received_at"),
    ("started", "started_at"),
    ("retried", "retried_at"),
    ("rejected", "rejected_at"),
    ("succeeded", "succeeded_at"),
    ("failed", "failed_at"),
    ("revoked", "revoked_at"),
)
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

TimeLike = datetime | float | int | str | None


def to_epoch(value: TimeLike, *, now: float | None = None) -> float | None:
    """A datetime, epoch seconds, an ISO 8601 string or a relative age ("15m", "2h", "7d")."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    match = _RELATIVE.match(value)
    if match:
        reference = datetime.now(UTC).timestamp() if now is None else now
        return reference - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(
            f"cannot read the time {value!r}: use ISO 8601 (2026-01-31T12:00) or an age (15m)"
        ) from exc
    return to_epoch(parsed)


@dataclass(frozen=True)
class TaskFilter:
    """What the Tasks page searches by; every field given must match (AND), None is "any".

    ``since``/``until`` bound the task's latest event time and take whatever ``to_epoch``
    reads. Text matches are substrings, case-insensitive, with ``%`` and ``_`` taken literally.
    """

    name: str | None = None
    state: str | None = None
    worker: str | None = None
    queue: str | None = None
    since: TimeLike = None
    until: TimeLike = None
    exception: str | None = None  # exception class name, exact ("ValueError")
    exception_text: str | None = None  # substring of the exception message
    text: str | None = None  # substring of args or kwargs
    root_id: str | None = None


def _contains(engine: Engine, column: Any, needle: str) -> Any:
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{escaped}%"
    # PostgreSQL: ILIKE is served by the trigram indexes. SQLite's LIKE already ignores ASCII
    # case and lower() would only slow the scan.
    if engine.dialect.name == "postgresql":
        return column.ilike(pattern, escape="\\")
    return column.like(pattern, escape="\\")


# A needle matching more rows than this is common: the newest-first scan with LIKE finds a
# page of them at once, while fetching every match from the text index would not.
INDEXED_MATCHES_MAX = 5000


def _text_filter(engine: Engine, columns: tuple[str, ...], needle: str) -> Any:
    """Substring of any of ``columns``: from SQLite's trigram index when it has one and the
    needle is rare, else LIKE/ILIKE (PostgreSQL's trigram indexes serve ILIKE themselves)."""
    like = or_(*(_contains(engine, tasks.c[column], needle) for column in columns))
    if len(needle) < text_index.MIN_NEEDLE or not text_index.present(engine):
        return like
    rowids = text_index.matching_rowids(engine, columns, needle, INDEXED_MATCHES_MAX)
    if rowids is None:
        return like
    return literal_column(f"{tasks.name}.rowid").in_(rowids)


def _conditions(engine: Engine, f: TaskFilter) -> list[Any]:
    """The WHERE clauses of ``f``. Built once per page: a text filter on SQLite asks the text
    index, and the page's count reuses that answer."""
    c = tasks.c
    where: list[Any] = []
    if f.name:
        where.append(c.name == f.name)
    if f.state:
        where.append(c.state == f.state.upper())
    if f.worker:
        where.append(c.worker == f.worker)
    if f.queue:
        where.append(c.queue == f.queue)
    since, until = to_epoch(f.since), to_epoch(f.until)
    if since is not None:
        where.append(c.timestamp >= since)
    if until is not None:
        where.append(c.timestamp <= until)
    if f.exception:
        where.append(c.exception_type == f.exception)
    if f.exception_text:
        where.append(_text_filter(engine, ("exception",), f.exception_text))
    if f.text:
        where.append(_text_filter(engine, ("args", "kwargs"), f.text))
    if f.root_id:
        where.append(c.root_id == f.root_id)
    return where


def _frame(rows: list[Any], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=columns)
    for column in columns:
        if column in TIME_COLUMNS or column in ("first_seen", "last_seen"):
            frame[column] = pd.to_datetime(frame[column], unit="s", utc=True)
    return frame


def search_tasks(
    engine: Engine,
    filters: TaskFilter | None = None,
    *,
    limit: int = 100,
    offset: int = 0,
    columns: tuple[str, ...] = LIST_COLUMNS,
) -> pd.DataFrame:
    """Tasks matching every given filter, newest first (by the task's latest event).

    Returns a DataFrame with one row per task and the ``columns`` asked for, by default
    ``LIST_COLUMNS``: task_id, name, state, queue, worker, retries (int or None), args and
    kwargs (reprs, truncated, None when not recorded), exception_type, exception, runtime
    (seconds, float), received_at, started_at and timestamp (UTC datetimes; ``timestamp`` is
    the task's latest event). Any column of ``schema.tasks`` may be asked for. An empty
    result is an empty DataFrame with the same columns. ``ValueError`` for an unreadable time.
    """
    where = _conditions(engine, filters or TaskFilter())
    return _search(engine, where, limit=limit, offset=offset, columns=columns)


def _search(
    engine: Engine, where: list[Any], *, limit: int, offset: int, columns: tuple[str, ...]
) -> pd.DataFrame:
    query = select(*(tasks.c[name] for name in columns)).where(*where)
    query = query.order_by(tasks.c.timestamp.desc()).limit(limit).offset(offset)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return _frame(rows, list(columns))


# Matches are counted up to this many: an exact count of millions costs seconds.
COUNT_CAP = 10_000


def count_tasks(engine: Engine, filters: TaskFilter | None = None, *, cap: int = COUNT_CAP) -> int:
    """How many tasks match, counted up to ``cap`` (an exact count of millions costs seconds
    and a page needs only "more than N")."""
    return _count(engine, _conditions(engine, filters or TaskFilter()), cap)


def _count(engine: Engine, where: list[Any], cap: int) -> int:
    inner = select(tasks.c.task_id).where(*where).limit(cap)
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(inner.subquery())).scalar())


def search_page(
    engine: Engine,
    filters: TaskFilter | None = None,
    *,
    limit: int = 100,
    offset: int = 0,
    cap: int = COUNT_CAP,
) -> tuple[pd.DataFrame, int]:
    """One Tasks page: ``search_tasks`` and how many tasks match (``count_tasks``, up to
    ``cap``). The count is a second query only when the page is full; otherwise the page
    holds every match, so a search that scans (a rare argument on SQLite) scans once."""
    where = _conditions(engine, filters or TaskFilter())
    frame = _search(engine, where, limit=limit, offset=offset, columns=LIST_COLUMNS)
    if len(frame) < limit:
        return frame, offset + len(frame)
    return frame, _count(engine, where, cap)


@dataclass(frozen=True)
class TimelineEntry:
    """One lifecycle step: "sent", "received", "started", "retried", "rejected",
    "succeeded", "failed" or "revoked", when (UTC) and how long after the previous step."""

    event: str
    at: datetime
    since_previous: float | None  # seconds


@dataclass(frozen=True)
class TaskDetail:
    """``fields``: every column of ``schema.tasks`` except the internal state_* ones, times as
    UTC datetimes; ``timeline``: the lifecycle, "sent" first and then oldest first (latest
    attempt's times for a retried task); ``children``: task_id, name, state, timestamp of the
    tasks whose parent it is, oldest first, at most 1000."""

    fields: dict[str, Any]
    timeline: list[TimelineEntry]
    children: pd.DataFrame


def task_detail(engine: Engine, task_id: str) -> TaskDetail | None:
    """Every stored field of one task, its lifecycle in time order and the tasks it started."""
    with engine.connect() as connection:
        row = connection.execute(select(tasks).where(tasks.c.task_id == task_id)).mappings().first()
        if row is None:
            return None
        children = connection.execute(
            select(tasks.c.task_id, tasks.c.name, tasks.c.state, tasks.c.timestamp)
            .where(tasks.c.parent_id == task_id)
            .order_by(tasks.c.timestamp)
            .limit(1000)
        ).all()
    fields = {key: value for key, value in row.items() if not key.startswith("state_")}
    # "sent" first whatever its clock says: Celery stamps task-sent after it has published the
    # task, so a busy client can stamp it after the worker's task-received (and a client's
    # clock may be off); the worker's own events are ordered by their times, which keeps a
    # retried task's steps in the order they happened.
    stamps = sorted(
        (event != "sent", row[column], event)
        for event, column in TIMELINE
        if row[column] is not None
    )
    timeline: list[TimelineEntry] = []
    previous: float | None = None
    for _, stamp, event in stamps:
        at = datetime.fromtimestamp(stamp, UTC)
        timeline.append(TimelineEntry(event, at, None if previous is None else stamp - previous))
        previous = stamp
    for column in TIME_COLUMNS:
        if fields.get(column) is not None:
            fields[column] = datetime.fromtimestamp(fields[column], UTC)
    return TaskDetail(fields, timeline, _frame(children, ["task_id", "name", "state", "timestamp"]))


def failures(
    engine: Engine,
    *,
    since: TimeLike = RECENT_WINDOW,
    until: TimeLike = None,
    name: str | None = None,
    queue: str | None = None,
    limit: int = 100,
) -> pd.DataFrame:
    """Failed tasks grouped by task name and exception class: count, first and last seen,
    and one of the task ids as an example to open.

    Returns a DataFrame with columns name, exception_type, count (int), first_seen and
    last_seen (UTC datetimes of the group's oldest and newest failure in the window) and
    example_task_id; the biggest groups first, at most ``limit`` rows.
    """
    c = tasks.c
    query = (
        select(
            c.name,
            c.exception_type,
            func.count().label("count"),
            func.min(c.timestamp).label("first_seen"),
            func.max(c.timestamp).label("last_seen"),
            func.max(c.task_id).label("example_task_id"),
        )
        .where(c.state == FAILED_STATE)
        .group_by(c.name, c.exception_type)
        .order_by(func.count().desc(), func.max(c.timestamp).desc())
        .limit(limit)
    )
    start, end = to_epoch(since), to_epoch(until)
    if start is not None:
        query = query.where(c.timestamp >= start)
    if end is not None:
        query = query.where(c.timestamp <= end)
    if name:
        query = query.where(c.name == name)
    if queue:
        query = query.where(c.queue == queue)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    columns = ["name", "exception_type", "count", "first_seen", "last_seen", "example_task_id"]
    return _frame(rows, columns)


def list_workers(engine: Engine) -> pd.DataFrame:
    """Every worker the recorder has seen (until retention forgets it), by hostname.

    Columns: hostname, status ("online"/"offline"), first_seen, last_seen, heartbeat_at (UTC
    datetimes), active, processed, pool_size, rss_bytes, memory_percent, sw_ver.
    """
    columns = [
        "hostname", "status", "first_seen", "last_seen", "heartbeat_at", "active", "processed",
        "pool_size", "rss_bytes", "memory_percent", "sw_ver",
    ]  # fmt: skip
    with engine.connect() as connection:
        rows = connection.execute(
            select(*(workers.c[name] for name in columns)).order_by(workers.c.hostname)
        ).all()
    frame = _frame(rows, columns)
    frame["heartbeat_at"] = pd.to_datetime(frame["heartbeat_at"], unit="s", utc=True)
    return frame


def task_names(engine: Engine, *, since: TimeLike = "7d") -> list[str]:
    """Distinct task names seen recently, for the console's filter drop-down."""
    query = select(tasks.c.name).where(tasks.c.name.is_not(None)).distinct()
    start = to_epoch(since)
    if start is not None:
        query = query.where(tasks.c.timestamp >= start)
    with engine.connect() as connection:
        return sorted(connection.execute(query).scalars())


WORKFLOW_COLUMNS = (
    "task_id", "name", "state", "parent_id", "root_id", "queue", "worker", "retries",
    *LIFECYCLE_COLUMNS, "runtime", "exception_type", "timestamp",
)  # fmt: skip


def workflow_root(engine: Engine, task_id: str, *, max_depth: int = 100) -> str | None:
    """The id of the task that started ``task_id``'s workflow (canvas): its stored root_id,
    else the last ancestor reached through parent_id (a task recorded before its root_id was,
    or a history missing the root). None when ``task_id`` is not in the history.

    ``max_depth`` bounds the walk, so a corrupt cycle of parents cannot loop forever."""
    c = tasks.c
    current, seen = task_id, set()
    with engine.connect() as connection:
        for _ in range(max_depth):
            row = connection.execute(
                select(c.root_id, c.parent_id).where(c.task_id == current)
            ).first()
            if row is None:
                return None if current == task_id else current
            if row.root_id:
                return str(row.root_id)
            seen.add(current)
            if not row.parent_id or row.parent_id in seen:
                return current
            current = str(row.parent_id)
    return current


def workflow(engine: Engine, root_id: str, *, limit: int = 2000) -> tuple[pd.DataFrame, int]:
    """Every task of the workflow started by ``root_id``: the root itself and the tasks whose
    root_id it is (served by ix_history_tasks_root_id), in the order they were sent.

    Returns the tasks (``WORKFLOW_COLUMNS``, at most ``limit``, the earliest sent first) and
    how many tasks the workflow has, counted up to ``limit + 1`` so that a caller can say
    "more than ``limit``" without counting a huge canvas."""
    c = tasks.c
    where = or_(c.root_id == root_id, c.task_id == root_id)
    order = func.coalesce(c.sent_at, c.received_at, c.started_at, c.timestamp)
    query = select(*(c[name] for name in WORKFLOW_COLUMNS)).where(where)
    with engine.connect() as connection:
        rows = connection.execute(query.order_by(order, c.task_id).limit(limit)).all()
        if len(rows) < limit:
            count = len(rows)
        else:
            inner = select(c.task_id).where(where).limit(limit + 1).subquery()
            count = int(connection.execute(select(func.count()).select_from(inner)).scalar())
    return _frame(rows, list(WORKFLOW_COLUMNS)), count


__all__ = [
    "TaskDetail",
    "TaskFilter",
    "TimelineEntry",
    "count_tasks",
    "failures",
    "list_workers",
    "search_page",
    "search_tasks",
    "task_detail",
    "task_names",
    "to_epoch",
    "workflow",
    "workflow_root",
]
