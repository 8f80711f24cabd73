"""Task and worker history tables with the console's search indexes.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

log = logging.getLogger("exporters.history.migrations")

TRIGRAM_INDEXES = {
    "ix_history_tasks_args_trgm": "args",
    "ix_history_tasks_kwargs_trgm": "kwargs",
    "ix_history_tasks_exception_trgm": "exception",
}


def upgrade() -> None:
    op.create_table(
        "history_tasks",
        sa.Column("task_id", sa.String(255), primary_key=True),
        sa.Column("name", sa.String(255)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("queue", sa.String(255)),
        sa.Column("exchange", sa.String(255)),
        sa.Column("routing_key", sa.String(255)),
        sa.Column("worker", sa.String(255)),
        sa.Column("retries", sa.Integer),
        sa.Column("root_id", sa.String(255)),
        sa.Column("parent_id", sa.String(255)),
        sa.Column("sent_at", sa.Double),
        sa.Column("received_at", sa.Double),
        sa.Column("started_at", sa.Double),
        sa.Column("succeeded_at", sa.Double),
        sa.Column("failed_at", sa.Double),
        sa.Column("retried_at", sa.Double),
        sa.Column("revoked_at", sa.Double),
        sa.Column("rejected_at", sa.Double),
        sa.Column("eta", sa.String(64)),
        sa.Column("expires", sa.String(64)),
        sa.Column("runtime", sa.Double),
        sa.Column("args", sa.Text),
        sa.Column("kwargs", sa.Text),
        sa.Column("result", sa.Text),
        sa.Column("exception_type", sa.String(255)),
        sa.Column("exception", sa.Text),
        sa.Column("traceback", sa.Text),
        sa.Column("timestamp", sa.Double, nullable=False),
        sa.Column("state_class", sa.SmallInteger, nullable=False),
        sa.Column("state_ts", sa.Double, nullable=False),
        sa.Column("state_rank", sa.SmallInteger, nullable=False),
    )
    op.create_index("ix_history_tasks_timestamp", "history_tasks", ["timestamp"])
    op.create_index(
        "ix_history_tasks_name_state_timestamp", "history_tasks", ["name", "state", "timestamp"]
    )
    op.create_index("ix_history_tasks_state_timestamp", "history_tasks", ["state", "timestamp"])
    op.create_index("ix_history_tasks_worker_timestamp", "history_tasks", ["worker", "timestamp"])
    op.create_index("ix_history_tasks_queue_timestamp", "history_tasks", ["queue", "timestamp"])
    op.create_index(
        "ix_history_tasks_exception_timestamp", "history_tasks", ["exception_type", "timestamp"]
    )
    op.create_index("ix_history_tasks_root_id", "history_tasks", ["root_id"])

    op.create_table(
        "history_workers",
        sa.Column("hostname", sa.String(255), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("first_seen", sa.Double, nullable=False),
        sa.Column("last_seen", sa.Double, nullable=False),
        sa.Column("online_at", sa.Double),
        sa.Column("offline_at", sa.Double),
        sa.Column("heartbeat_at", sa.Double),
        sa.Column("pid", sa.Integer),
        sa.Column("sw_ident", sa.String(64)),
        sa.Column("sw_ver", sa.String(64)),
        sa.Column("sw_sys", sa.String(64)),
        sa.Column("freq", sa.Double),
        sa.Column("active", sa.Integer),
        sa.Column("processed", sa.BigInteger),
        sa.Column("loadavg", sa.String(64)),
        sa.Column("rss_bytes", sa.BigInteger),
        sa.Column("memory_limit_bytes", sa.BigInteger),
        sa.Column("memory_percent", sa.Double),
        sa.Column("pool_size", sa.Integer),
        sa.Column("status_ts", sa.Double, nullable=False),
    )

    if op.get_bind().dialect.name == "postgresql":
        _create_trigram_indexes()


def _create_trigram_indexes() -> None:
    bind = op.get_bind()
    # pg_trgm ships with PostgreSQL and is a trusted extension (any database owner may create
    # it); where it is missing, substring search still works, by scanning.
    savepoint = bind.begin_nested()
    try:
        bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except sa.exc.DBAPIError as exc:
        savepoint.rollback()
        log.warning("pg_trgm unavailable (%s); argument search will scan", exc.orig)
        return
    savepoint.commit()
    for index, column in TRIGRAM_INDEXES.items():
        op.create_index(
            index,
            "history_tasks",
            [column],
            postgresql_using="gin",
            postgresql_ops={column: "gin_trgm_ops"},
        )


def downgrade() -> None:
    op.drop_table("history_workers")
    op.drop_table("history_tasks")
