"""SQLite's substring index on task arguments and exception messages (FTS5, trigram).

PostgreSQL answers ``ILIKE '%needle%'`` from its pg_trgm indexes; SQLite has no such index for
LIKE, and a rare needle scanned a million rows in about a second (bench/history.py). An
external-content FTS5 table with the trigram tokenizer indexes the same three columns; triggers
keep it in step with ``history_tasks`` inside the same transaction, so it is never stale.

It is keyed by ``history_tasks``' rowid. The recorder never runs VACUUM (which may renumber
rowids of a table without an INTEGER PRIMARY KEY); after a manual one, ``fleetops history
reindex`` rebuilds the index. A migration that copies ``history_tasks`` (Alembic's batch mode
on SQLite) drops the triggers with the old table: it must ``drop()`` before and ``create()``
after.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, Engine, text

log = logging.getLogger(__name__)

TABLE = "history_tasks_text"
COLUMNS = ("args", "kwargs", "exception")
# Trigram matching needs three characters; shorter needles fall back to LIKE.
MIN_NEEDLE = 3

_cols = ", ".join(COLUMNS)
_new = ", ".join(f"new.{c}" for c in COLUMNS)
_old = ", ".join(f"old.{c}" for c in COLUMNS)
_changed = " OR ".join(f"old.{c} IS NOT new.{c}" for c in COLUMNS)
DDL = (
    f"CREATE VIRTUAL TABLE {TABLE} USING fts5({_cols},"
    " content='history_tasks', content_rowid='rowid', tokenize='trigram')",
    f"CREATE TRIGGER {TABLE}_insert AFTER INSERT ON history_tasks BEGIN"
    f" INSERT INTO {TABLE}(rowid, {_cols}) VALUES (new.rowid, {_new}); END",
    f"CREATE TRIGGER {TABLE}_delete AFTER DELETE ON history_tasks BEGIN"
    f" INSERT INTO {TABLE}({TABLE}, rowid, {_cols}) VALUES ('delete', old.rowid, {_old}); END",
    # Most upserts change state and times only: re-index only when the text really changed.
    f"CREATE TRIGGER {TABLE}_update AFTER UPDATE OF {_cols} ON history_tasks WHEN {_changed}"
    f" BEGIN INSERT INTO {TABLE}({TABLE}, rowid, {_cols}) VALUES ('delete', old.rowid, {_old});"
    f" INSERT INTO {TABLE}(rowid, {_cols}) VALUES (new.rowid, {_new}); END",
)
DROP = (
    f"DROP TRIGGER IF EXISTS {TABLE}_update",
    f"DROP TRIGGER IF EXISTS {TABLE}_delete",
    f"DROP TRIGGER IF EXISTS {TABLE}_insert",
    f"DROP TABLE IF EXISTS {TABLE}",
)


def create(connection: Connection) -> bool:
    """Create the index and fill it from the rows already stored; False where this SQLite
    has no trigram tokenizer (before 3.34), and searches keep scanning."""
    raw = connection.connection.driver_connection
    try:
        raw.execute(f"CREATE VIRTUAL TABLE temp.{TABLE}_probe USING fts5(x, tokenize='trigram')")
        raw.execute(f"DROP TABLE temp.{TABLE}_probe")
    except Exception as exc:  # sqlite3.OperationalError: no such tokenizer / module
        log.warning("SQLite lacks FTS5 trigram (%s); argument search will scan", exc)
        return False
    rows = connection.exec_driver_sql("SELECT count(*) FROM history_tasks").scalar() or 0
    if rows > 100_000:  # about a minute and a half per million rows on one core
        log.info("indexing the argument text of %s stored tasks; this runs once", f"{rows:,}")
    for statement in DDL:
        connection.exec_driver_sql(statement)
    rebuild(connection)
    return True


def drop(connection: Connection) -> None:
    for statement in DROP:
        connection.exec_driver_sql(statement)


def rebuild(connection: Connection) -> None:
    connection.exec_driver_sql(f"INSERT INTO {TABLE}({TABLE}) VALUES ('rebuild')")


def present(engine: Engine) -> bool:
    """Whether this database has the index (SQLite, migrated, with trigram support)."""
    if engine.dialect.name != "sqlite":
        return False
    query = text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name")
    with engine.connect() as connection:
        return connection.execute(query, {"name": TABLE}).first() is not None


def match_expression(columns: tuple[str, ...], needle: str) -> str:
    """An FTS5 query for ``needle`` as a substring of any of ``columns``."""
    phrase = '"' + needle.replace('"', '""') + '"'
    return "{" + " ".join(columns) + "} : " + phrase


def matching_rowids(
    engine: Engine, columns: tuple[str, ...], needle: str, limit: int
) -> list[int] | None:
    """Rowids of the tasks whose ``columns`` contain ``needle``, or None when more than
    ``limit`` match (a common needle: the newest-first scan with LIKE stops early then)."""
    query = text(f"SELECT rowid FROM {TABLE} WHERE {TABLE} MATCH :q LIMIT :n")
    with engine.connect() as connection:
        rows = connection.execute(
            query, {"q": match_expression(columns, needle), "n": limit + 1}
        ).all()
    if len(rows) > limit:
        return None
    return [row[0] for row in rows]
