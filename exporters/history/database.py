"""Engines for the history database, with settings that suit a write-heavy recorder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from fleetops.errors import ConfigError


def _advisory_key(name: bytes) -> int:
    return int.from_bytes(name, "big")


# PostgreSQL advisory locks the recorders of one database take, in one table so that no two
# uses share a key. Each is a constant no other application uses for its own advisory locks.
MIGRATION_LOCK_KEY = _advisory_key(b"fohist01")  # one migration at a time (migrate.py)
PRUNE_LOCK_KEY = _advisory_key(b"fohist02")  # one pruner at a time (retention.py)


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (the driver we ship), not psycopg2."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def create_history_engine(url: str, *, echo: bool = False) -> Engine:
    url = normalise_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"FLEETOPS_HISTORY_DATABASE_URL: cannot parse {url!r}: {exc}") from exc
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database, echo)
    if parsed.get_backend_name() != "postgresql":
        raise ConfigError(
            f"FLEETOPS_HISTORY_DATABASE_URL: {parsed.get_backend_name()!r} is not supported;"
            " use sqlite:///path or postgresql://..."
        )
    # pre_ping: after an outage the pool would otherwise hand out dead connections first.
    return create_engine(url, echo=echo, pool_pre_ping=True, connect_args={"connect_timeout": 5})


def _sqlite_engine(url: str, database: str | None, echo: bool) -> Engine:
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, echo=echo, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL: the console reads while the recorder writes. NORMAL sync is durable across a
        # process crash (not a power cut), the usual trade for a monitoring store.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return engine


def describe(engine: Engine) -> str:
    """The URL without its password, for logs and error messages."""
    return engine.url.render_as_string(hide_password=True)
