"""History fixtures: a migrated history database on SQLite and on PostgreSQL, and a publisher
of events through a real broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from exporters.history import migrate
from exporters.history.database import create_history_engine
from tests.history.recording import Publisher
from tests.servers import RedisServer


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_history_engine(database_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def publisher(redis_server: RedisServer) -> Iterator[Publisher]:
    """Sends events the way workers do, through Celery's event dispatcher."""
    publisher = Publisher(redis_server.url)
    yield publisher
    publisher.close()
