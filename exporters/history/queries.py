"""Read the task history: the console's Tasks, Task detail and Failures pages and the
``fleetops history`` commands use these functions, never SQL of their own.

This is the history's public read API; the console (console/sources/history.py) calls it, so
the names, parameters and returned columns below are a contract (pinned by
tests/history/test_store.py::test_the_console_api_is_stable). Every function takes an
``Engine`` from ``database.create_history_engine`` first and raises SQLAlchemy errors when the
database is down; the caller decides how to show that.

Several apps (docs/history.md, "Several apps"): every function the console calls takes a
keyword ``app`` (None: every app) and the rows that list tasks carry their ``app``; ``apps()``
names the apps the history holds.

Every search is newest first and limited, so it is served by an index scan that stops early
(see the indexes in schema.py); results are pandas DataFrames whose time columns are
timezone-aware UTC ``datetime64`` values (NaT when the event was not seen).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pandas as pd
from sqlalchemy import Engine, and_, case, func, literal_column, or_, select

from exporters.history import text_index
from exporters.history.schema import FAILED_STATE, LIFECYCLE_COLUMNS, tasks, workers
from exporters.history.schema import task_runs as task_runs_table
from exporters.history.settings import RECENT_WINDOW
from exporters.metrics.settings import ExporterSettings
from fleetops import task_faults
from fleetops.settings import field_default

TIME_COLUMNS = (*LIFECYCLE_COLUMNS, "timestamp")
LIST_COLUMNS = (
    "task_id", "name", "state", "queue", "worker", "retries", "args", "kwargs",
    "exception_type", "exception", "runtime", "received_at", "started_at", "timestamp", "app",
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


def of_app(column: Any, app: str | None) -> list[Any]:
    """The WHERE clause that keeps one app's rows (none for every app). Any string is only
    compared, never trusted: an unknown app matches nothing."""
    if app is None:
        return []
    if not isinstance(app, str):
        raise ValueError(f"app must be a name or None, not {type(app).__name__}")
    return [column == app]


def apps(engine: Engine) -> list[str]:
    """The apps the history holds tasks or workers of, sorted: the console's app selector.
    Served by ix_history_tasks_app_timestamp (one skip per app on PostgreSQL's and SQLite's
    index, a handful of rows) and the workers' key."""
    found: set[str] = set()
    with engine.connect() as connection:
        found.update(connection.execute(select(tasks.c.app).distinct()).scalars())
        found.update(connection.execute(select(workers.c.app).distinct()).scalars())
    return sorted(found)


def _conditions(engine: Engine, f: TaskFilter, app: str | None = None) -> list[Any]:
    """The WHERE clauses of ``f``. Built once per page: a text filter on SQLite asks the text
    index, and the page's count reuses that answer."""
    c = tasks.c
    where: list[Any] = of_app(c.app, app)
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
    app: str | None = None,
) -> pd.DataFrame:
    """Tasks matching every given filter, newest first (by the task's latest event).

    Returns a DataFrame with one row per task and the ``columns`` asked for, by default
    ``LIST_COLUMNS``: task_id, name, state, queue, worker, retries (int or None), args and
    kwargs (reprs, truncated, None when not recorded), exception_type, exception, runtime
    (seconds, float), received_at, started_at and timestamp (UTC datetimes; ``timestamp`` is
    the task's latest event). Any column of ``schema.tasks`` may be asked for. An empty
    result is an empty DataFrame with the same columns. ``ValueError`` for an unreadable time.
    """
    where = _conditions(engine, filters or TaskFilter(), app)
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


def count_tasks(
    engine: Engine,
    filters: TaskFilter | None = None,
    *,
    cap: int = COUNT_CAP,
    app: str | None = None,
) -> int:
    """How many tasks match, counted up to ``cap`` (an exact count of millions costs seconds
    and a page needs only "more than N")."""
    return _count(engine, _conditions(engine, filters or TaskFilter(), app), cap)


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
    app: str | None = None,
) -> tuple[pd.DataFrame, int]:
    """One Tasks page: ``search_tasks`` and how many tasks match (``count_tasks``, up to
    ``cap``). The count is a second query only when the page is full; otherwise the page
    holds every match, so a search that scans (a rare argument on SQLite) scans once."""
    where = _conditions(engine, filters or TaskFilter(), app)
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


def task_detail(engine: Engine, task_id: str, *, app: str | None = None) -> TaskDetail | None:
    """Every stored field of one task (its ``app`` among them), its lifecycle in time order
    and the tasks it started; None when the task is not in the history (of ``app``)."""
    with engine.connect() as connection:
        row = (
            connection.execute(
                select(tasks).where(tasks.c.task_id == task_id, *of_app(tasks.c.app, app))
            )
            .mappings()
            .first()
        )
        if row is None:
            return None
        children = connection.execute(
            select(tasks.c.task_id, tasks.c.name, tasks.c.state, tasks.c.timestamp)
            .where(tasks.c.parent_id == task_id, tasks.c.app == row["app"])
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
    app: str | None = None,
) -> pd.DataFrame:
    """Failed tasks grouped by app, task name and exception class: count, first and last
    seen, and one of the task ids as an example to open.

    Returns a DataFrame with columns name, exception_type, count (int), first_seen and
    last_seen (UTC datetimes of the group's oldest and newest failure in the window),
    example_task_id and app; the biggest groups first, at most ``limit`` rows.
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
            c.app,
        )
        .where(c.state == FAILED_STATE, *of_app(c.app, app))
        .group_by(c.app, c.name, c.exception_type)
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
    columns = [
        "name", "exception_type", "count", "first_seen", "last_seen", "example_task_id", "app",
    ]  # fmt: skip
    return _frame(rows, columns)


def list_workers(engine: Engine, *, app: str | None = None) -> pd.DataFrame:
    """Every worker the recorder has seen (until retention forgets it), by hostname.

    Columns: hostname, status ("online"/"offline"), first_seen, last_seen, heartbeat_at (UTC
    datetimes), active, processed, pool_size, rss_bytes, memory_percent, sw_ver, app.
    """
    columns = [
        "hostname", "status", "first_seen", "last_seen", "heartbeat_at", "active", "processed",
        "pool_size", "rss_bytes", "memory_percent", "sw_ver", "app",
    ]  # fmt: skip
    with engine.connect() as connection:
        rows = connection.execute(
            select(*(workers.c[name] for name in columns))
            .where(*of_app(workers.c.app, app))
            .order_by(workers.c.hostname, workers.c.app)
        ).all()
    frame = _frame(rows, columns)
    frame["heartbeat_at"] = pd.to_datetime(frame["heartbeat_at"], unit="s", utc=True)
    return frame


def task_names(engine: Engine, *, since: TimeLike = "7d", app: str | None = None) -> list[str]:
    """Distinct task names seen recently, for the console's filter drop-down."""
    query = (
        select(tasks.c.name).where(tasks.c.name.is_not(None), *of_app(tasks.c.app, app)).distinct()
    )
    start = to_epoch(since)
    if start is not None:
        query = query.where(tasks.c.timestamp >= start)
    with engine.connect() as connection:
        return sorted(connection.execute(query).scalars())


WORKFLOW_COLUMNS = (
    "task_id", "name", "state", "parent_id", "root_id", "queue", "worker", "retries",
    *LIFECYCLE_COLUMNS, "runtime", "exception_type", "timestamp", "app",
)  # fmt: skip


def workflow_root(
    engine: Engine, task_id: str, *, max_depth: int = 100, app: str | None = None
) -> str | None:
    """The id of the task that started ``task_id``'s workflow (canvas): its stored root_id,
    else the last ancestor reached through parent_id (a task recorded before its root_id was,
    or a history missing the root). None when ``task_id`` is not in the history.

    ``max_depth`` bounds the walk, so a corrupt cycle of parents cannot loop forever."""
    c = tasks.c
    current, seen = task_id, set()
    with engine.connect() as connection:
        for _ in range(max_depth):
            row = connection.execute(
                select(c.root_id, c.parent_id).where(c.task_id == current, *of_app(c.app, app))
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


def workflow(
    engine: Engine, root_id: str, *, limit: int = 2000, app: str | None = None
) -> tuple[pd.DataFrame, int]:
    """Every task of the workflow started by ``root_id``: the root itself and the tasks whose
    root_id it is (served by ix_history_tasks_root_id), in the order they were sent.

    Returns the tasks (``WORKFLOW_COLUMNS``, at most ``limit``, the earliest sent first) and
    how many tasks the workflow has, counted up to ``limit + 1`` so that a caller can say
    "more than ``limit``" without counting a huge canvas."""
    c = tasks.c
    where = and_(or_(c.root_id == root_id, c.task_id == root_id), *of_app(c.app, app))
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


# Issue 14: orphaned, stuck and twice-run tasks, and the visibility-timeout trap. What each one
# is lives in fleetops/task_faults.py; these read them from the history.

STARTED_STATE = "STARTED"
RUN_STARTED, RUN_RETRIED = "started", "retried"
# States after which a task runs no more: the worker that sent it is where the task finished.
FINISHED_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED", "REJECTED"})
# The runs of one task shown at most: a task started a thousand times is broken anyway.
TASK_RUNS_MAX = 1000
# Rows read at most before a check that SQL cannot make (a per-name bound, an ETA string) picks
# the ones to show: the newest or oldest of these, so a page costs the same on any history.
SCAN_MAX = 10_000

TWICE_RUN_COLUMNS = (
    "task_id", "name", "queue", "state", "runs", "workers", "first_started_at",
    "last_started_at", "timestamp", "app",
)  # fmt: skip
ORPHAN_COLUMNS = (
    "task_id", "name", "queue", "worker", "started_at", "worker_seen_at", "outcome",
    "finished_on", "state", "app",
)  # fmt: skip
STUCK_COLUMNS = (
    "task_id", "name", "queue", "worker", "started_at", "running_seconds", "bound_seconds",
    "app",
)  # fmt: skip
ETA_COLUMNS = (
    "task_id", "name", "queue", "state", "received_at", "eta", "ahead_seconds", "app",
)  # fmt: skip
# A worker silent this long has been purged by the exporter: its process counts as gone.
SILENT_WORKER_GONE_AFTER: float = field_default(ExporterSettings, "exporter_purge_offline_after")
# No per-name stuck bounds: read-only, so the default cannot be changed by a caller.
NO_BOUNDS: Mapping[str, float] = MappingProxyType({})
# Worst first: a lost task will never run, a waiting one may still, a redelivered one did.
OUTCOME_ORDER = {"lost": 0, "waiting": 1, "redelivered": 2}


def _utc(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    for column in columns:
        # A time no calendar holds becomes NaT rather than an error for the whole page.
        frame[column] = pd.to_datetime(frame[column], unit="s", utc=True, errors="coerce")
    return frame


def _now(now: TimeLike) -> float:
    given = to_epoch(now)
    return time.time() if given is None else given


def _in_order(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    return frame.reindex(columns=list(columns)).reset_index(drop=True)


def task_runs(engine: Engine, task_id: str, *, app: str | None = None) -> pd.DataFrame:
    """Every start and planned retry of one task (history_task_runs), oldest first: columns
    kind ("started" or "retried"), at (UTC datetime) and worker; at most TASK_RUNS_MAX."""
    r = task_runs_table.c
    query = (
        select(r.kind, r.at, r.worker)
        .where(r.task_id == task_id, *of_app(r.app, app))  # the primary key's first column
        .order_by(r.at, r.kind.desc())
        .limit(TASK_RUNS_MAX)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return _utc(pd.DataFrame.from_records(rows, columns=["kind", "at", "worker"]), "at")


RUNS_OF_COLUMNS = ("task_id", "kind", "at", "worker")
# Task ids per statement: far below the bound parameters any supported database takes
# (SQLite >= 3.35 takes 32,766), so a list of any length is read in as few statements.
RUNS_OF_IDS_MAX = 1000


def runs_of(engine: Engine, task_ids: Iterable[str], *, app: str | None = None) -> pd.DataFrame:
    """``task_runs`` of many tasks in one query (one per RUNS_OF_IDS_MAX ids): the console
    lists up to 100 tasks run twice with each one's runs, and one read per task cost a round
    trip each. Columns RUNS_OF_COLUMNS: task_id, kind, at (UTC datetime) and worker; grouped
    by task_id, each task's runs oldest first and at most TASK_RUNS_MAX of them (as
    ``task_runs``). Ids with no runs have no rows."""
    ids = list(dict.fromkeys(str(task_id) for task_id in task_ids))
    r = task_runs_table.c
    rows: list[Any] = []
    with engine.connect() as connection:
        for first in range(0, len(ids), RUNS_OF_IDS_MAX):
            chunk = ids[first : first + RUNS_OF_IDS_MAX]
            numbered = (
                select(
                    r.task_id,
                    r.kind,
                    r.at,
                    r.worker,
                    func.row_number()
                    .over(partition_by=r.task_id, order_by=_run_order(r))
                    .label("number"),
                )
                # The primary key's first column.
                .where(r.task_id.in_(chunk), *of_app(r.app, app))
                .subquery("listed_runs")
            )
            query = (
                select(numbered.c.task_id, numbered.c.kind, numbered.c.at, numbered.c.worker)
                .where(numbered.c.number <= TASK_RUNS_MAX)
                .order_by(numbered.c.task_id, numbered.c.number)
            )
            rows += connection.execute(query).all()
    return _utc(pd.DataFrame.from_records(rows, columns=list(RUNS_OF_COLUMNS)), "at")


def _run_order(r: Any) -> tuple[Any, Any]:
    # Oldest first; a start and a retry stamped the same instant are one attempt (the retry
    # ends the attempt the start began), so "started" sorts before "retried".
    return (r.at, r.kind.desc())


def _repeated(connection: Any, start: float | None, app: str | None = None) -> list[str]:
    """Ids of the tasks started at least twice, one of the starts at or after ``start`` (the
    SCAN_MAX most recently started of them). Read first and on their own: the window comes
    from ix_history_task_runs_at and each task's starts from the primary key, and the window
    functions below then read only these tasks' runs by primary key, whatever a planner
    would have guessed for a subquery's HAVING."""
    r = task_runs_table.c
    recent = select(r.task_id).where(r.kind == RUN_STARTED, *of_app(r.app, app))
    if start is not None:
        recent = recent.where(r.at >= start)
    query = (
        select(r.task_id)
        .where(r.kind == RUN_STARTED, r.task_id.in_(recent))
        .group_by(r.task_id)
        .having(func.count() >= 2)
        .order_by(func.max(r.at).desc())
        .limit(SCAN_MAX)
    )
    return list(connection.execute(query).scalars())


def _windowed_runs(task_ids: list[str]) -> Any:
    """The runs of these tasks with the attempt each belongs to (the retries before it) and
    the run before it: LAG and a running SUM, which SQLite (3.25+) and PostgreSQL both run.
    Up to SCAN_MAX ids in one IN: within the bound parameters of SQLite >= 3.32 (32,766; the
    history needs 3.35 anyway, docs/history.md) and of PostgreSQL (65,535)."""
    r = task_runs_table.c
    window = {"partition_by": r.task_id, "order_by": _run_order(r)}
    attempt = func.sum(case((r.kind == RUN_RETRIED, 1), else_=0)).over(**window)
    return (
        select(
            r.task_id,
            r.kind,
            r.at,
            r.worker,
            r.name,
            r.queue,
            r.app,
            attempt.label("attempt"),
            func.lag(r.kind).over(**window).label("previous_kind"),
            func.lag(r.at).over(**window).label("previous_at"),
            func.lag(r.worker).over(**window).label("previous_worker"),
        )
        .where(r.task_id.in_(task_ids))
        .subquery("runs")
    )


def _joined_workers(text: str | None) -> str:
    # The database joins them in no promised order: each worker once, in the order given.
    parts = (text or "").split(",")
    return ",".join(dict.fromkeys(part for part in parts if part))


def twice_run_tasks(
    engine: Engine, *, since: TimeLike = RECENT_WINDOW, limit: int = 100, app: str | None = None
) -> pd.DataFrame:
    """Tasks started more than once within one attempt (two task-started events with no
    task-retried between them: fleetops/task_faults.py), the latest such start in the window.

    Columns TWICE_RUN_COLUMNS: task_id, name, queue, state (the task's, None when retention
    dropped it), runs (starts of its attempt started most often, >= 2), workers (comma
    separated, each once), first_started_at and last_started_at of that attempt and timestamp
    (the task's latest event), UTC datetimes. Most runs first, then the newest; at most
    ``limit``."""
    start = to_epoch(since)
    with engine.connect() as connection:
        repeated = _repeated(connection, start, app)
        rows = (
            connection.execute(_twice_run_query(repeated, start, limit)).all() if repeated else []
        )
    frame = pd.DataFrame.from_records(rows, columns=list(TWICE_RUN_COLUMNS))
    frame["runs"] = frame["runs"].astype(int)
    frame["workers"] = frame["workers"].map(_joined_workers)
    return _utc(frame, "first_started_at", "last_started_at", "timestamp")


def _twice_run_query(repeated: list[str], start: float | None, limit: int) -> Any:
    runs = _windowed_runs(repeated)
    per_attempt = (
        select(
            runs.c.task_id,
            func.count().label("runs"),
            func.min(runs.c.at).label("first_started_at"),
            func.max(runs.c.at).label("last_started_at"),
            func.max(runs.c.name).label("run_name"),
            func.max(runs.c.queue).label("run_queue"),
            func.aggregate_strings(runs.c.worker, ",").label("workers"),
            func.max(runs.c.app).label("run_app"),
        )
        .where(runs.c.kind == RUN_STARTED)
        .group_by(runs.c.task_id, runs.c.attempt)
        .having(func.count() >= 2)
    )
    if start is not None:
        per_attempt = per_attempt.having(func.max(runs.c.at) >= start)
    attempts = per_attempt.subquery("attempts")
    ranked = select(
        attempts,
        func.row_number()
        .over(
            partition_by=attempts.c.task_id,
            order_by=(attempts.c.runs.desc(), attempts.c.last_started_at.desc()),
        )
        .label("rank"),
    ).subquery("ranked")
    t = tasks.c
    query = (
        select(
            ranked.c.task_id,
            func.coalesce(t.name, ranked.c.run_name),
            func.coalesce(t.queue, ranked.c.run_queue),
            t.state,
            ranked.c.runs,
            ranked.c.workers,
            ranked.c.first_started_at,
            ranked.c.last_started_at,
            func.coalesce(t.timestamp, ranked.c.last_started_at),
            ranked.c.run_app,
        )
        .select_from(ranked.outerjoin(tasks, t.task_id == ranked.c.task_id))
        .where(ranked.c.rank == 1)
        .order_by(ranked.c.runs.desc(), ranked.c.last_started_at.desc(), ranked.c.task_id)
        .limit(limit)
    )
    return query


def _down_since(
    row: Any, *, started_at: float, until: float, now: float, worker_timeout: float, bound: float
) -> float | None:
    """When the worker of a run started at ``started_at`` let it down, if it did before
    ``until``: its restart (a worker-online after the start), the end of its heartbeats once
    it has been silent past ``worker_timeout``, or, after a worker-offline, the moment the run
    passed its stuck ``bound``; None while it is up (or still draining).

    Celery sends worker-offline when its consumer stops, BEFORE a warm shutdown waits for the
    running tasks (they may still finish there), and no heartbeat follows it. So a run on an
    offline worker is orphaned only once it has run longer than its bound, the longest a warm
    shutdown should wait for it (a task with a hard time limit is killed by then):
    fleetops/task_faults.py ``drained_orphan``, the exporter's rule too.

    The workers table keeps each worker's latest online, offline and heartbeat only, so a
    worker that went down and came back before its latest offline is seen by its restart."""
    candidates = []
    if row.online_at is not None and row.online_at > started_at:
        # A new process of that host: the old one and its tasks are gone.
        candidates.append(row.online_at)
    if row.status == "offline":
        offline = row.offline_at if row.offline_at is not None else row.status_ts
        candidates.append(task_faults.drained_orphan_at(started_at, offline, bound))
    elif now - row.last_seen > worker_timeout:
        # Known to be down only once silent for the timeout: the same delay the exporter has.
        candidates.append(row.last_seen + worker_timeout)
    found = [c for c in candidates if c is not None and math.isfinite(c) and c <= until]
    # Never before the start: a worker cannot orphan a task it had not started.
    return max(min(found), started_at) if found else None


def _down_workers(now: float, worker_timeout: float) -> Any:
    w = workers.c
    return or_(w.status == "offline", w.last_seen < now - worker_timeout)


def orphaned_tasks(
    engine: Engine,
    *,
    now: TimeLike = None,
    worker_timeout: float = 30.0,
    redelivery_window: float = task_faults.DEFAULT_REDELIVERY_WINDOW_SECONDS,
    since: TimeLike = RECENT_WINDOW,
    limit: int = 100,
    bounds: Mapping[str, float] = NO_BOUNDS,
    default_bound: float = task_faults.DEFAULT_STUCK_AFTER_SECONDS,
    app: str | None = None,
) -> pd.DataFrame:
    """Tasks whose worker went down while they ran (fleetops/task_faults.py).

    * **waiting** / **lost**: still STARTED (no terminal event) on a worker that restarted
      since the start, fell silent past ``worker_timeout``, or sent worker-offline and the
      task has run past its stuck bound since (task_faults.stuck_bound() of ``bounds``, else
      ``default_bound``: the same ones as ``stuck_tasks``), as a warm shutdown drains the
      running tasks after that event; lost once it has been orphaned longer than
      ``redelivery_window`` (task_faults.redelivery_window(): 0 when no redelivery can come),
      else waiting for its redelivery.
    * **redelivered**: started again after the worker of its previous run (same attempt) went
      down, by the same rule (a start while the previous run still drained on a worker that
      sent worker-offline is a run twice, not a redelivery); ``finished_on`` names the worker
      it finished on, None while it still runs.

    Columns ORPHAN_COLUMNS (``worker``/``started_at`` are the orphaned run's, ``worker_seen_at``
    when that worker was last heard, UTC datetimes). Lost first, then waiting, then
    redelivered; the oldest start first within each; at most ``limit``. The window is the
    task's latest event (waiting/lost) or the new start (redelivered)."""
    at = _now(now)
    start = to_epoch(since)
    if not _positive(default_bound):
        default_bound = task_faults.DEFAULT_STUCK_AFTER_SECONDS
    usable = _usable_bounds(bounds)
    found = _still_orphaned(
        engine, at, worker_timeout, redelivery_window, start, usable, default_bound, app
    )
    found += _redelivered(engine, at, worker_timeout, start, limit, usable, default_bound, app)
    found.sort(key=lambda row: (OUTCOME_ORDER[row["outcome"]], row["started_at"], row["task_id"]))
    frame = pd.DataFrame.from_records(found[:limit], columns=list(ORPHAN_COLUMNS))
    # None, not pandas' NaN, for "not finished": the documented value.
    finished = frame["finished_on"].astype(object)
    frame["finished_on"] = finished.where(finished.notna(), None)
    return _utc(_in_order(frame, ORPHAN_COLUMNS), "started_at", "worker_seen_at")


def _still_orphaned(
    engine: Engine,
    now: float,
    worker_timeout: float,
    window: float,
    start: float | None,
    bounds: Mapping[str, float],
    default_bound: float,
    app: str | None,
) -> list[dict[str, Any]]:
    t, w = tasks.c, workers.c
    query = (
        select(
            t.task_id,
            t.name,
            t.queue,
            t.worker,
            t.started_at,
            t.state,
            w.status,
            w.status_ts,
            w.online_at,
            w.offline_at,
            w.last_seen,
            t.app,
        )
        # The worker of the task's own app: a host name may be a worker of several apps.
        .select_from(tasks.join(workers, and_(w.hostname == t.worker, w.app == t.app)))
        # ix_history_tasks_state_timestamp, then each worker by its primary key.
        .where(t.state == STARTED_STATE, t.started_at.is_not(None), *of_app(t.app, app))
        .where(or_(_down_workers(now, worker_timeout), w.online_at > t.started_at))
        .order_by(t.started_at)
        .limit(SCAN_MAX)
    )
    if start is not None:
        query = query.where(t.timestamp >= start)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    found = []
    for row in rows:
        bound = task_faults.stuck_bound(
            row.name or "", bounds=bounds, time_limit=None, default=default_bound
        )
        down = _down_since(
            row, started_at=row.started_at, until=now, now=now, worker_timeout=worker_timeout,
            bound=bound,
        )  # fmt: skip
        if down is None:
            continue
        lost = now - down > window and _process_gone(row, now)
        found.append(
            {
                "task_id": row.task_id, "name": row.name, "queue": row.queue,
                "worker": row.worker, "started_at": row.started_at,
                "worker_seen_at": row.last_seen, "outcome": "lost" if lost else "waiting",
                "finished_on": None, "state": row.state, "app": row.app,
            }
        )  # fmt: skip
    return found


def _process_gone(row: Any, now: float) -> bool:
    """Whether the worker process that ran the task is known to be gone, as the exporter
    judges it before it calls an orphan lost: it announced its shutdown, a new process of that
    worker came online, or it has been silent longer than the exporter purges a worker after.
    A worker that is only silent may be blocked (a solo pool running a long task sends no
    heartbeats) and still finish the task: its orphan waits, it is not lost."""
    if row.status == "offline" or (row.online_at is not None and row.online_at > row.started_at):
        return True
    return now - row.last_seen > SILENT_WORKER_GONE_AFTER


def _drained_when_started_again(row: Any, bound: float) -> bool:
    """Whether the previous run was still draining on its worker when the task started
    again: the worker sent worker-offline between the two starts (and did not come back
    online in between), and the previous run had not yet run past its stuck ``bound`` (the
    rule of ``_down_since``). Its silence after worker-offline is expected and tells nothing."""
    offline, online = row.offline_at, row.online_at
    if offline is None or not row.previous_at <= offline <= row.at:
        return False
    if online is not None and row.previous_at < online <= row.at:
        return False
    return row.at < row.previous_at + bound


def _redelivered(
    engine: Engine,
    now: float,
    worker_timeout: float,
    start: float | None,
    limit: int,
    bounds: Mapping[str, float],
    default_bound: float,
    app: str | None,
) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        repeated = _repeated(connection, start, app)
    if not repeated:
        return []
    runs = _windowed_runs(repeated)
    t, w = tasks.c, workers.c
    # The previous run's worker went down between the two starts: offline, restarted, or
    # silent since before the new start.
    went_down = or_(
        and_(w.offline_at >= runs.c.previous_at, w.offline_at <= runs.c.at),
        and_(w.online_at > runs.c.previous_at, w.online_at <= runs.c.at),
        and_(w.last_seen < runs.c.at, w.last_seen < now - worker_timeout),
    )
    query = (
        select(
            runs.c.task_id,
            func.coalesce(t.name, runs.c.name).label("name"),
            func.coalesce(t.queue, runs.c.queue).label("queue"),
            runs.c.previous_worker,
            runs.c.previous_at,
            runs.c.at,
            t.state,
            t.worker,
            w.status,
            w.status_ts,
            w.online_at,
            w.offline_at,
            w.last_seen,
            runs.c.app,
        )
        .select_from(
            runs.join(
                workers, and_(w.hostname == runs.c.previous_worker, w.app == runs.c.app)
            ).outerjoin(tasks, t.task_id == runs.c.task_id)
        )
        .where(runs.c.kind == RUN_STARTED, runs.c.previous_kind == RUN_STARTED, went_down)
        .order_by(runs.c.previous_at, runs.c.task_id)
        .limit(limit)
    )
    if start is not None:
        query = query.where(runs.c.at >= start)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return [
        {
            "task_id": row.task_id,
            "name": row.name,
            "queue": row.queue,
            "worker": row.previous_worker,
            "started_at": row.previous_at,
            "worker_seen_at": row.last_seen,
            "outcome": "redelivered",
            "finished_on": row.worker if row.state in FINISHED_STATES else None,
            "state": row.state,
            "app": row.app,
        }
        for row in rows
        # A start while the previous run still drained is a run twice, not a redelivery.
        if not _drained_when_started_again(
            row,
            task_faults.stuck_bound(
                row.name or "", bounds=bounds, time_limit=None, default=default_bound
            ),
        )
    ]


def stuck_tasks(
    engine: Engine,
    *,
    bounds: Mapping[str, float],
    default_bound: float,
    now: TimeLike = None,
    worker_timeout: float = 30.0,
    limit: int = 100,
    app: str | None = None,
) -> pd.DataFrame:
    """Tasks STARTED on a live worker (online, heard within ``worker_timeout``, not restarted
    since the start) for longer than their bound: task_faults.stuck_bound() of ``bounds`` (per
    task name, e.g. the exporter's fleetops_task_stuck_bound_seconds), else ``default_bound``.

    Columns STUCK_COLUMNS: started_at a UTC datetime, running_seconds and bound_seconds
    floats. Longest over its bound first; at most ``limit``, picked from the SCAN_MAX oldest
    starts that pass the smallest bound."""
    at = _now(now)
    bounds = _usable_bounds(bounds)
    usable = list(bounds.values())
    shortest = min([*usable, default_bound]) if _positive(default_bound) else min(usable or [0])
    t, w = tasks.c, workers.c
    query = (
        select(t.task_id, t.name, t.queue, t.worker, t.started_at, t.app)
        # Joined through an expression on purpose: SQLite's statistics rate a worker's tasks
        # rarer than the STARTED ones and would read every task of every live worker through
        # ix_history_tasks_worker_timestamp; this way only ix_history_tasks_state_timestamp
        # (running or orphaned tasks) is read, each worker by its primary key.
        .select_from(
            tasks.join(workers, and_(w.hostname == func.coalesce(t.worker, ""), w.app == t.app))
        )
        .where(t.state == STARTED_STATE, t.started_at <= at - shortest, *of_app(t.app, app))
        .where(w.status == "online", w.last_seen >= at - worker_timeout)
        .where(or_(w.online_at.is_(None), w.online_at <= t.started_at))
        .order_by(t.started_at)
        .limit(SCAN_MAX)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    found = []
    for row in rows:
        bound = task_faults.stuck_bound(
            row.name or "", bounds=bounds, time_limit=None, default=default_bound
        )
        running = at - row.started_at
        if _positive(bound) and running > bound:
            found.append((*row[:5], running, bound, row.app))
    found.sort(key=lambda item: (-(item[5] - item[6]), item[0]))
    frame = pd.DataFrame.from_records(found[:limit], columns=list(STUCK_COLUMNS))
    return _utc(frame, "started_at")


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def _usable_bounds(bounds: Mapping[str, float]) -> dict[str, float]:
    """The per-name bounds that are positive finite numbers: whatever else a caller passes
    (NaN, a string from JSON, None) leaves that name to the default bound, not an error."""
    return {
        str(name): float(b) for name, b in bounds.items() if _positive(b) and type(b) is not bool
    }


def eta_beyond_visibility(
    engine: Engine,
    *,
    visibility_timeout: float,
    since: TimeLike = RECENT_WINDOW,
    limit: int = 100,
    app: str | None = None,
) -> pd.DataFrame:
    """Tasks received with an ETA (or countdown) further away than ``visibility_timeout``:
    the broker hands them out again while they wait (task_faults.eta_beyond_visibility).

    Columns ETA_COLUMNS: received_at (the latest receipt) and eta UTC datetimes,
    ahead_seconds (ETA minus the send, or minus the receipt when no task-sent was seen).
    From the send because the task row keeps the latest receipt: once the broker has handed
    the task out again, its second copy is received close to the ETA and measuring from it
    would hide the very task the trap caught. Both times come from the producer's side (the
    ETA from its clock). Farthest first; at most ``limit``, among the SCAN_MAX newest tasks
    with an ETA in the window (by their latest event). Unreadable ETAs are skipped."""
    t = tasks.c
    query = (
        select(
            t.task_id,
            t.name,
            t.queue,
            t.state,
            t.received_at,
            t.eta,
            func.coalesce(t.sent_at, t.received_at).label("since"),
            t.app,
        )
        .where(t.eta.is_not(None), t.received_at.is_not(None), *of_app(t.app, app))
        .order_by(t.timestamp.desc())  # ix_history_tasks_timestamp, newest first
        .limit(SCAN_MAX)
    )
    start = to_epoch(since)
    if start is not None:
        query = query.where(t.timestamp >= start)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    found = []
    for row in rows:
        eta = task_faults.eta_epoch(row.eta)
        if task_faults.eta_beyond_visibility(eta, row.since, visibility_timeout):
            found.append((*row[:5], eta, eta - row.since, row.app))  # type: ignore[operator]
    found.sort(key=lambda item: (-item[6], item[0]))
    frame = pd.DataFrame.from_records(found[:limit], columns=list(ETA_COLUMNS))
    return _utc(frame, "received_at", "eta")


__all__ = [
    "TaskDetail",
    "TaskFilter",
    "TimelineEntry",
    "apps",
    "count_tasks",
    "eta_beyond_visibility",
    "failures",
    "list_workers",
    "orphaned_tasks",
    "runs_of",
    "search_page",
    "search_tasks",
    "stuck_tasks",
    "task_detail",
    "task_names",
    "task_runs",
    "to_epoch",
    "twice_run_tasks",
    "workflow",
    "workflow_root",
]
