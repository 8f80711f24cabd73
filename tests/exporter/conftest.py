"""Fixtures of the exporter tests: a real exporter process on the test's Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from celery import Celery

from tests.exporter.process import ExporterProcess, run_exporter
from tests.processes import Processes
from tests.servers import RedisServer


@pytest.fixture
def start_exporter(
    redis_server: RedisServer, processes: Processes
) -> Callable[..., ExporterProcess]:
    def start(*args: str) -> ExporterProcess:
        return run_exporter(processes, redis_server.url, *args)

    return start


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[Celery]:
    """A producer like the application's: sends tasks and task-sent events."""
    app = Celery("exporter-test-client", broker=redis_server.url, set_as_current=False)
    app.conf.task_send_sent_event = True
    app.conf.broker_transport_options = {"priority_steps": [0, 3, 6, 9]}
    yield app
    app.close()
