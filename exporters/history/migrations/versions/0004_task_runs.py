"""One row per start and per planned retry of a task (history_task_runs), so a task that ran
twice keeps both runs: the task row holds only the latest attempt.

The worker is part of the key and never NULL ("" when an event names none): a NULL in a
primary key is refused by PostgreSQL and would let SQLite store duplicates.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "history_task_runs",
        sa.Column("task_id", sa.String(255), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("at", sa.Double, primary_key=True),
        sa.Column("worker", sa.String(255), primary_key=True),
        sa.Column("name", sa.String(255)),
        sa.Column("queue", sa.String(255)),
    )
    op.create_index("ix_history_task_runs_at", "history_task_runs", ["at"])


def downgrade() -> None:
    op.drop_index("ix_history_task_runs_at", table_name="history_task_runs")
    op.drop_table("history_task_runs")
