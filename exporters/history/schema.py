"""The history tables. The Alembic migrations in ``migrations/`` create exactly these; a test
checks that the migrated database matches this metadata.

Times are UTC epoch seconds in DOUBLE columns, as in Celery events and Flower: exact, cheap to
compare and index on SQLite and PostgreSQL alike. ``queries`` turns them into datetimes.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    literal_column,
)

from fleetops.apps import DEFAULT_APP

metadata = MetaData()

# Alembic's bookkeeping table, named so it never collides with an application's own migrations
# when the history shares a database with it.
VERSION_TABLE = "history_alembic_version"

# When the latest attempt of a task reached each step, in the table's column order.
LIFECYCLE_COLUMNS = (
    "sent_at", "received_at", "started_at", "succeeded_at", "failed_at", "retried_at",
    "revoked_at", "rejected_at",
)  # fmt: skip

# Migration 0005: the Celery app whose broker delivered the event (fleetops/apps.py), on every
# table that rows of events make. A database from before several apps holds one app's rows:
# they are DEFAULT_APP's. Names are at most 63 characters (fleetops.apps.APP_NAME).
APP_SERVER_DEFAULT = DEFAULT_APP


def _app_column() -> Column:
    return Column("app", String(64), nullable=False, server_default=APP_SERVER_DEFAULT)


tasks = Table(
    "history_tasks",
    metadata,
    # The key stays the task id alone (docs/history.md, "Several apps"): a task id names one
    # task of one app; the writer never lets another app's events change a stored row.
    Column("task_id", String(255), primary_key=True),
    Column("name", String(255)),
    Column("state", String(16), nullable=False),
    Column("queue", String(255)),
    Column("exchange", String(255)),
    Column("routing_key", String(255)),
    Column("worker", String(255)),
    Column("retries", Integer),
    Column("root_id", String(255)),
    Column("parent_id", String(255)),
    # Lifecycle, latest attempt (a retry re-sends the same task id).
    *(Column(name, Double) for name in LIFECYCLE_COLUMNS),
    Column("eta", String(64)),
    Column("expires", String(64)),
    Column("runtime", Double),
    Column("args", Text),
    Column("kwargs", Text),
    Column("result", Text),
    Column("exception_type", String(255)),
    Column("exception", Text),
    Column("traceback", Text),
    # Time of the latest event seen for the task: sort key of every search and of retention.
    Column("timestamp", Double, nullable=False),
    # Which event decided `state` (see merge.py): (state_class, state_ts, state_rank) only
    # ever grows, so replays, duplicates and late events cannot move a task backwards.
    Column("state_class", SmallInteger, nullable=False),
    Column("state_ts", Double, nullable=False),
    Column("state_rank", SmallInteger, nullable=False),
    _app_column(),
)

# The console's searches: newest first, filtered by name+state, state, worker, queue, exception.
Index("ix_history_tasks_timestamp", tasks.c.timestamp)
Index("ix_history_tasks_name_state_timestamp", tasks.c.name, tasks.c.state, tasks.c.timestamp)
Index("ix_history_tasks_state_timestamp", tasks.c.state, tasks.c.timestamp)
Index("ix_history_tasks_worker_timestamp", tasks.c.worker, tasks.c.timestamp)
Index("ix_history_tasks_queue_timestamp", tasks.c.queue, tasks.c.timestamp)
Index("ix_history_tasks_exception_timestamp", tasks.c.exception_type, tasks.c.timestamp)
Index("ix_history_tasks_root_id", tasks.c.root_id)
# Migration 0002: a task's children (partial: most tasks have no parent, and a plain index's
# statistics make the planner refuse it), and one name newest first without a state.
Index(
    "ix_history_tasks_parent_id",
    tasks.c.parent_id,
    sqlite_where=tasks.c.parent_id.is_not(None),
    postgresql_where=tasks.c.parent_id.is_not(None),
)
Index("ix_history_tasks_name_timestamp", tasks.c.name, tasks.c.timestamp)
# Migration 0005: one app's tasks newest first. The other searches keep their indexes and
# filter the app on the rows they walk: a name, worker or queue belongs to one app in practice,
# so that filter costs nearly nothing, and every index more slows every write (one only here).
Index("ix_history_tasks_app_timestamp", tasks.c.app, tasks.c.timestamp)
# The Failures page, from the index alone. Partial indexes are used only when the query names
# the same literal state: queries.failures() writes FAILED_STATE as a literal, not a parameter.
FAILED_STATE = literal_column("'FAILURE'")
Index(
    "ix_history_tasks_failures",
    tasks.c.state,
    tasks.c.timestamp,
    tasks.c.name,
    tasks.c.exception_type,
    tasks.c.task_id,
    # 0005: the app too, so a Failures page of one app is still read from the index alone.
    tasks.c.app,
    sqlite_where=tasks.c.state == FAILED_STATE,
    postgresql_where=tasks.c.state == FAILED_STATE,
)

# PostgreSQL only (created by the migration when pg_trgm is available): trigram indexes that
# make substring search on arguments and exception messages use an index.
TRIGRAM_INDEXES = {
    "ix_history_tasks_args_trgm": "args",
    "ix_history_tasks_kwargs_trgm": "kwargs",
    "ix_history_tasks_exception_trgm": "exception",
}

# Keyed by (hostname, app) since 0005: two apps on one host may both run "celery@web1".
workers = Table(
    "history_workers",
    metadata,
    Column("hostname", String(255), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("first_seen", Double, nullable=False),
    Column("last_seen", Double, nullable=False),
    Column("online_at", Double),
    Column("offline_at", Double),
    Column("heartbeat_at", Double),
    Column("pid", Integer),
    Column("sw_ident", String(64)),
    Column("sw_ver", String(64)),
    Column("sw_sys", String(64)),
    Column("freq", Double),
    Column("active", Integer),
    Column("processed", BigInteger),
    Column("loadavg", String(64)),
    Column("rss_bytes", BigInteger),
    Column("memory_limit_bytes", BigInteger),
    Column("memory_percent", Double),
    Column("pool_size", Integer),
    # Timestamp of the event that set `status` (online/offline), so a late heartbeat from
    # before a worker-offline cannot bring it back online.
    Column("status_ts", Double, nullable=False),
    Column("app", String(64), primary_key=True, server_default=APP_SERVER_DEFAULT),
)

# Migration 0004: every start of a task, and every planned retry between starts. The task row
# above keeps only the latest attempt; these rows keep each run, so a task started twice (a
# redelivery after its worker died, or the visibility-timeout trap) shows both runs with their
# workers (fleetops/task_faults.py defines "run twice"). Insert-only and keyed by the event's
# own identity, so replays and duplicates add nothing.
RUN_KINDS = ("started", "retried")
task_runs = Table(
    "history_task_runs",
    metadata,
    Column("task_id", String(255), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("at", Double, primary_key=True),
    Column("worker", String(255), primary_key=True),
    Column("name", String(255)),
    Column("queue", String(255)),
    _app_column(),
)
# Runs of a window ("tasks started twice in the last day") and retention, oldest first.
Index("ix_history_task_runs_at", task_runs.c.at)
