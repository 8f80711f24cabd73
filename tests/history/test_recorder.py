"""The recorder against a real Redis broker and real SQLite/PostgreSQL: events flow in through
Celery's event dispatcher, out into the database, through outages and restarts."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from exporters.history.database import create_history_engine
from exporters.history.recorder import Recorder
from fleetops.fleet.spec import free_port
from tests.helpers import wait_for
from tests.history.events import task_lifecycle
from tests.history.proxy import OutageProxy
from tests.history.recording import (
    Publisher,
    history_settings,
    metric,
    running_recorder,
    task_states,
)
from tests.servers import RedisServer


def lifecycles(prefix: str, count: int, start: float | None = None) -> list[list[dict]]:
    # Recent times: the recorder's retention (7 days by default) would remove older ones.
    start = time.time() - 600 if start is None else start
    return [
        task_lifecycle(f"{prefix}-{n:04d}", start=start + n, outcome="failed" if n % 5 == 0
                       else "succeeded")
        for n in range(count)
    ]  # fmt: skip


def expected_states(batches: list[list[dict]]) -> dict[str, str]:
    return {
        b[0]["uuid"]: "FAILURE" if b[-1]["type"] == "task-failed" else "SUCCESS" for b in batches
    }


def outage_lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "exporters.history.recorder"
        and record.levelno >= logging.INFO
        and text in record.getMessage()
    ]


def all_written(database_url: str, expected: dict[str, str]) -> bool:
    states = task_states(database_url)
    return all(states.get(task_id) == state for task_id, state in expected.items())


def test_events_reach_the_database_and_survive_a_restart(
    redis_server: RedisServer, publisher: Publisher, database_url: str, tmp_path: Path
) -> None:
    settings = history_settings(redis_server.url, database_url, tmp_path)
    first = lifecycles("first", 50)
    with running_recorder(settings, publisher) as recorder:
        for events in first:
            publisher.send_all(events)
        # A bad field is left out and counted, the event kept; an event that cannot be used
        # at all (an integer task id) is rejected and counted; the rest of the batch is written.
        publisher.send({"type": "task-received", "uuid": "bad", "retries": "many"})
        publisher.send({"type": "task-received", "uuid": 12345})
        wait_for(lambda: all_written(database_url, expected_states(first) | {"bad": "RECEIVED"}),
                 timeout=60, message="first tasks written")  # fmt: skip
        wait_for(lambda: metric(recorder, "fleetops_history_events_corrected_total",
                                reason="bad_number") == 1)  # fmt: skip
        wait_for(lambda: metric(recorder, "fleetops_history_events_rejected_total",
                                reason="bad_field") == 1)  # fmt: skip
        assert metric(recorder, "fleetops_history_database_up") == 1
    second = lifecycles("second", 20)
    with running_recorder(settings, publisher):
        for events in second:
            publisher.send_all(events)
        expected = expected_states(first) | expected_states(second)
        wait_for(lambda: all_written(database_url, expected), timeout=60,
                 message="history kept across the restart")  # fmt: skip


@pytest.mark.slow
def test_postgres_outage_while_events_flow_loses_nothing(
    redis_server: RedisServer,
    publisher: Publisher,
    postgres_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The outage is a TCP proxy in front of the real PostgreSQL that we close and reopen
    # (tests/history/proxy.py): connections are cut and refused as when the server goes away.
    from sqlalchemy.engine import make_url

    caplog.set_level(logging.INFO, logger="exporters.history")
    real = make_url(postgres_url)
    proxy = OutageProxy(real.host or "127.0.0.1", real.port or 5432)
    proxy.start()
    via_proxy = real.set(port=proxy.port).render_as_string(hide_password=False)
    settings = history_settings(
        redis_server.url, via_proxy, tmp_path, history_buffer_events=100, history_batch_size=50
    )
    before, during, after_stop = (
        lifecycles("before", 30),
        lifecycles("during", 150),
        lifecycles("stopped", 40),
    )
    try:
        with running_recorder(settings, publisher) as recorder:
            for events in before:
                publisher.send_all(events)
            wait_for(lambda: all_written(postgres_url, expected_states(before)), timeout=60)
            proxy.stop()
            for events in during:
                publisher.send_all(events)
            # 600 events, 100 fit in memory: the rest went to the disk spool.
            wait_for(lambda: metric(recorder, "fleetops_history_buffered_events",
                                    where="disk") > 0, timeout=60)  # fmt: skip
            assert metric(recorder, "fleetops_history_database_up") == 0
            proxy.start()
            wait_for(lambda: all_written(postgres_url, expected_states(during)), timeout=90,
                     message="events from the outage written")  # fmt: skip
            assert metric(recorder, "fleetops_history_events_dropped_total",
                          reason="buffer_full") == 0  # fmt: skip
            # Many retries, one line per outage: down, back, caught up.
            wait_for(lambda: outage_lines(caplog, "caught up"), timeout=30)
            assert metric(recorder, "fleetops_history_write_errors_total", kind="unavailable") > 1
            assert len(outage_lines(caplog, "unavailable")) == 1
            assert len(outage_lines(caplog, "back after")) == 1

            # Down again, and the recorder is stopped meanwhile: the spool keeps the events.
            proxy.stop()
            for events in after_stop:
                publisher.send_all(events)
            wait_for(lambda: recorder.backlog() >= 4 * len(after_stop), timeout=60)
        spool = list(settings.effective_spool_dir.glob("*.jsonl"))
        assert spool, "events waiting at stop must be on disk"
        proxy.start()
        with running_recorder(settings, publisher):
            wait_for(lambda: all_written(postgres_url, expected_states(after_stop)),
                     timeout=90, message="spooled events written after restart")  # fmt: skip
        assert not list(settings.effective_spool_dir.glob("*.jsonl"))
    finally:
        proxy.stop()


def test_on_rabbitmq_events_sent_while_the_recorder_is_down_wait_for_it(
    rabbitmq_url: str, tmp_path: Path
) -> None:
    # A durable, named queue: unlike Redis pub/sub, the broker keeps what is sent meanwhile.
    url = f"sqlite:///{tmp_path / 'history.db'}"
    settings = history_settings(
        rabbitmq_url, url, tmp_path, history_queue_name=f"history-{tmp_path.name}"
    )
    publisher = Publisher(rabbitmq_url)
    try:
        first, while_down = lifecycles("up", 10), lifecycles("down", 20)
        with running_recorder(settings, publisher):
            for events in first:
                publisher.send_all(events)
            wait_for(lambda: all_written(url, expected_states(first)), timeout=60)
        for events in while_down:
            publisher.send_all(events)
        with running_recorder(settings, publisher):
            wait_for(lambda: all_written(url, expected_states(while_down)), timeout=60,
                     message="events sent while the recorder was down")  # fmt: skip
    finally:
        publisher.close()


class SqliteWriteLock:
    """Another connection holding SQLite's write lock, as a backup, a VACUUM or an operator's
    open transaction does: the recorder's writes fail with "database is locked" until it ends."""

    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None)

    def __enter__(self) -> SqliteWriteLock:
        self.connection.execute("BEGIN EXCLUSIVE")
        return self

    def __exit__(self, *_: object) -> None:
        self.connection.execute("COMMIT")
        self.connection.close()


def impatient_sqlite_engine(url: str) -> Engine:
    """The recorder's own engine, waiting 0.2 s instead of 30 s for a lock, so the test sees
    the outage in seconds."""
    engine = create_history_engine(url)

    @event.listens_for(engine, "connect")
    def _short_busy_timeout(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=200")

    return engine


@pytest.mark.slow
def test_sqlite_locked_while_events_flow_loses_nothing(
    redis_server: RedisServer,
    publisher: Publisher,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="exporters.history")
    path = tmp_path / "history.db"
    url = f"sqlite:///{path}"
    settings = history_settings(
        redis_server.url, url, tmp_path, history_buffer_events=100, history_batch_size=50
    )
    before, during = lifecycles("before", 20), lifecycles("during", 100)
    engine = impatient_sqlite_engine(url)
    with running_recorder(settings, publisher, engine=engine) as recorder:
        for events in before:
            publisher.send_all(events)
        wait_for(lambda: all_written(url, expected_states(before)), timeout=60)
        with SqliteWriteLock(path):
            for events in during:
                publisher.send_all(events)
            wait_for(lambda: metric(recorder, "fleetops_history_buffered_events",
                                    where="disk") > 0, timeout=60)  # fmt: skip
            # The first write waits out the busy timeout before it fails.
            wait_for(lambda: metric(recorder, "fleetops_history_database_up") == 0, timeout=60)
        wait_for(lambda: all_written(url, expected_states(during)), timeout=90,
                 message="events from the outage written")  # fmt: skip
        wait_for(lambda: outage_lines(caplog, "caught up"), timeout=30)
    assert metric(recorder, "fleetops_history_events_dropped_total", reason="buffer_full") == 0
    assert len(outage_lines(caplog, "unavailable")) == 1
    assert recorder.backlog() == 0


def test_the_buffer_bound_is_reported_when_hit(
    redis_server: RedisServer, publisher: Publisher, tmp_path: Path
) -> None:
    # Nothing listens on this port: the database is down from the start.
    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/history"
    settings = history_settings(
        redis_server.url, unreachable, tmp_path, history_buffer_events=10,
        history_spool_max_bytes=4096,
    )  # fmt: skip
    with running_recorder(settings, publisher) as recorder:
        for events in lifecycles("flood", 40):
            publisher.send_all(events)
        wait_for(lambda: metric(recorder, "fleetops_history_events_dropped_total",
                                reason="buffer_full") > 0, timeout=60)  # fmt: skip
        assert metric(recorder, "fleetops_history_spool_bytes") <= 4096
        # The bound can be hit before the writer's first attempt has failed: wait for it.
        wait_for(lambda: metric(recorder, "fleetops_history_write_errors_total",
                                kind="unavailable") > 0, timeout=60)  # fmt: skip


def test_recorder_settings_name_the_bad_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from exporters.history.settings import load
    from fleetops.errors import ConfigError

    monkeypatch.setenv("FLEETOPS_HISTORY_DATABASE_URL", "mysql://nope")
    with pytest.raises(ConfigError, match="FLEETOPS_HISTORY_DATABASE_URL"):
        load()
    monkeypatch.setenv("FLEETOPS_HISTORY_DATABASE_URL", "sqlite:///x.db")
    monkeypatch.setenv("FLEETOPS_HISTORY_BATCH_SIZE", "0")
    with pytest.raises(ConfigError, match="FLEETOPS_HISTORY_BATCH_SIZE"):
        load()


__all__ = ["Recorder"]
