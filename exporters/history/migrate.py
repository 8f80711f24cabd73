"""Bring a history database to the newest schema with the Alembic migrations shipped here.

Several recorders may start at the same moment on one database (docs/history.md, "Several
recorders"): without a lock both find no schema, both create it, and one fails on a duplicate
table. The upgrade therefore runs in one transaction that first takes a database-wide lock: the
second recorder waits for the first to commit, then finds the schema at head and does nothing.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from exporters.history.database import MIGRATION_LOCK_KEY
from exporters.history.schema import VERSION_TABLE

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _config(connection: object | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Idempotent: an up-to-date database is left as it is."""
    with engine.begin() as connection:
        lock_for_migration(connection)
        command.upgrade(_config(connection), revision)


def lock_for_migration(connection: Connection) -> None:
    """Take, for the rest of the transaction, the lock that only one migration holds at a time.

    PostgreSQL: a transaction-level advisory lock, released at commit or rollback and with the
    session of a process that dies, so a recorder killed mid-migration blocks nobody. SQLite:
    the database's write lock at once (BEGIN IMMEDIATE; the driver has not begun a transaction
    yet, it does so lazily at the first write), waited for up to the busy timeout.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    elif connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")
