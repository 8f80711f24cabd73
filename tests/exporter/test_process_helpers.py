"""The helpers that wait on real processes: a dead process fails the test at once, with the end
of its log, instead of after the whole timeout."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import httpx
import pytest

from fleetops.fleet.spec import free_port
from tests.exporter.process import ExporterProcess
from tests.helpers import ProcessExited, wait_for
from tests.servers import CeleryProcess, RedisServer, celery_argv, worker_ready


def test_wait_for_retries_transient_errors_and_returns_the_value() -> None:
    answers = iter([ConnectionRefusedError("not yet"), httpx.ConnectError("not yet"), 0, "up"])

    def predicate() -> object:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert wait_for(predicate, timeout=5, interval=0.01) == "up"


def test_wait_for_times_out_naming_the_last_transient_error() -> None:
    def refused() -> bool:
        raise ConnectionRefusedError("nobody listens")

    with pytest.raises(TimeoutError, match=r"the server.*nobody listens"):
        wait_for(refused, timeout=0.2, interval=0.01, message="the server")


@pytest.mark.parametrize(
    "error", [AssertionError("wrong answer"), ProcessExited("dead"), KeyError("a bug")]
)
def test_wait_for_lets_anything_else_through_at_once(error: Exception) -> None:
    calls = []

    def predicate() -> bool:
        calls.append(1)
        raise error

    began = time.monotonic()
    with pytest.raises(type(error)):
        wait_for(predicate, timeout=30, interval=0.01)
    assert calls == [1] and time.monotonic() - began < 1


def test_an_exporter_that_exits_fails_at_once_with_its_log(tmp_path: Path) -> None:
    exporter = ExporterProcess(
        "redis://127.0.0.1:1/0", tmp_path / "exporter.log", args=("--event-reader", "bogus")
    )
    began = time.monotonic()
    with pytest.raises(ProcessExited, match=r"(?s)exporter exited with code 2.*EVENT_READER"):
        exporter.start()
    assert time.monotonic() - began < 30  # not the 60 s of the readiness timeout


def test_a_redis_that_cannot_listen_fails_at_once_with_its_log(tmp_path: Path) -> None:
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):  # the port is taken
        server = RedisServer(port=port, directory=tmp_path)
        with pytest.raises(ProcessExited, match=r"(?s)redis-server on \d+ exited.*in use"):
            server.start()
    server.stop()


def test_a_worker_that_exits_fails_at_once_with_its_log(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETOPS_")}
    worker = CeleryProcess(
        "worker", "broken@127.0.0.1", celery_argv("worker", "--no-such-option"), env,
        tmp_path / "worker.log",
    ).start()  # fmt: skip
    try:
        with pytest.raises(ProcessExited, match=r"(?s)worker broken@127.0.0.1 exited.*such"):
            wait_for(lambda: worker_ready(worker), timeout=60, message="worker ready")
    finally:
        worker.stop()
