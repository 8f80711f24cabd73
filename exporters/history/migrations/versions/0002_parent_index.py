"""Indexes found missing by bench/history.py at a million rows:

* parent id, partial (only tasks that have a parent): the task detail page lists the tasks a
  task started, and that lookup scanned the whole table. Partial because most tasks have no
  parent: a plain index counts all those NULLs as one value and the planner refuses it.
* (name, timestamp): "this task, newest first" without a state sorted every row of the name.
* failures only, covering (state, timestamp, name, exception_type, task_id): the Failures page
  groups a week of failures from the index alone instead of reading each row.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    has_parent = sa.text("parent_id IS NOT NULL")
    op.create_index(
        "ix_history_tasks_parent_id",
        "history_tasks",
        ["parent_id"],
        sqlite_where=has_parent,
        postgresql_where=has_parent,
    )
    op.create_index("ix_history_tasks_name_timestamp", "history_tasks", ["name", "timestamp"])
    failed = sa.text("state = 'FAILURE'")
    op.create_index(
        "ix_history_tasks_failures",
        "history_tasks",
        ["state", "timestamp", "name", "exception_type", "task_id"],
        sqlite_where=failed,
        postgresql_where=failed,
    )


def downgrade() -> None:
    op.drop_index("ix_history_tasks_failures", table_name="history_tasks")
    op.drop_index("ix_history_tasks_name_timestamp", table_name="history_tasks")
    op.drop_index("ix_history_tasks_parent_id", table_name="history_tasks")
