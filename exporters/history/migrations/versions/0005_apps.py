"""Several apps in one history (docs/history.md, "Several apps"): an ``app`` column on every
table that rows of events make, the app whose broker delivered the event.

* Rows already stored were recorded for the one app a recorder followed before: they get
  ``default`` (fleetops.apps.DEFAULT_APP) through the column's server default. On PostgreSQL
  (11+) adding a column with a constant default rewrites nothing; SQLite stores the default
  in the schema too.
* history_tasks keeps its key (task_id): a task id names one task of one app, and the writer
  never lets another app's events change a stored row. Keeping it spares a copy of the biggest
  table and of SQLite's text index (text_index.py) at upgrade.
* history_workers is keyed by (hostname, app): two apps on one host may both run a worker
  named "celery@web1". The table is small; SQLite copies it (batch mode) to change its key.
* (app, timestamp) serves one app's tasks newest first; the Failures index gains the app so
  one app's Failures page is still read from the index alone.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

DEFAULT_APP = "default"  # fleetops.apps.DEFAULT_APP as of this revision: a migration is frozen
FAILED = sa.text("state = 'FAILURE'")


def _app_column(**kwargs: object) -> sa.Column:
    return sa.Column("app", sa.String(64), nullable=False, server_default=DEFAULT_APP, **kwargs)


def upgrade() -> None:
    op.add_column("history_tasks", _app_column())
    op.add_column("history_task_runs", _app_column())
    op.create_index("ix_history_tasks_app_timestamp", "history_tasks", ["app", "timestamp"])
    op.drop_index("ix_history_tasks_failures", table_name="history_tasks")
    op.create_index(
        "ix_history_tasks_failures",
        "history_tasks",
        ["state", "timestamp", "name", "exception_type", "task_id", "app"],
        sqlite_where=FAILED,
        postgresql_where=FAILED,
    )
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_workers_keyed_by("hostname", "app")
    else:
        op.add_column("history_workers", _app_column())
        op.drop_constraint("history_workers_pkey", "history_workers", type_="primary")
        op.create_primary_key("history_workers_pkey", "history_workers", ["hostname", "app"])


def _sqlite_workers_keyed_by(*key: str) -> None:
    """SQLite cannot change a key in place: copy the (small) workers table into one with the
    new key, with or without the app column, and put it in the old one's place."""
    old = sa.Table("history_workers", sa.MetaData(), autoload_with=op.get_bind())
    kept = [column.name for column in old.columns if column.name != "app" or "app" in key]
    columns = [
        sa.Column(name, old.c[name].type, nullable=name not in key and old.c[name].nullable)
        for name in kept
    ]
    if "app" in key and "app" not in kept:
        columns.append(_app_column())
    op.create_table("history_workers_rekeyed", *columns, sa.PrimaryKeyConstraint(*key))
    names = ", ".join(kept)
    op.execute(f"INSERT INTO history_workers_rekeyed ({names}) SELECT {names} FROM history_workers")
    op.drop_table("history_workers")
    op.rename_table("history_workers_rekeyed", "history_workers")


def downgrade() -> None:
    # Back to one app: the rows of every other app would merge into one key, so they go.
    for table in ("history_tasks", "history_task_runs", "history_workers"):
        op.execute(sa.text(f"DELETE FROM {table} WHERE app <> :app").bindparams(app=DEFAULT_APP))
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_workers_keyed_by("hostname")
    else:
        op.drop_constraint("history_workers_pkey", "history_workers", type_="primary")
        op.drop_column("history_workers", "app")
        op.create_primary_key("history_workers_pkey", "history_workers", ["hostname"])
    op.drop_index("ix_history_tasks_failures", table_name="history_tasks")
    op.create_index(
        "ix_history_tasks_failures",
        "history_tasks",
        ["state", "timestamp", "name", "exception_type", "task_id"],
        sqlite_where=FAILED,
        postgresql_where=FAILED,
    )
    op.drop_index("ix_history_tasks_app_timestamp", table_name="history_tasks")
    op.drop_column("history_task_runs", "app")
    op.drop_column("history_tasks", "app")
