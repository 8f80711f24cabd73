"""SQLite: a trigram full-text index on arguments and exception messages.

bench/history.py at a million rows: a rare argument over a week took 1.1 s and an exception
text 0.6 s on SQLite, both scans (PostgreSQL uses its pg_trgm indexes and was under 60 ms).
See exporters/history/text_index.py. PostgreSQL: nothing to do.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

from exporters.history import text_index

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        text_index.create(op.get_bind())


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        text_index.drop(op.get_bind())
