"""The helpers that wait on real processes: a dead process fails the test at once, with the end
of its log, instead of after the whole timeout."""

from __future__ import annotations

import signal
import socket
import sys
import time

import httpx
import pytest

from fleetops.fleet.spec import ProcessSpec, free_port
from tests.exporter.process import run_exporter
from tests.helpers import ProcessExited, wait_for
from tests.processes import Processes
from tests.servers import RedisServer, run_celery


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


def test_an_exporter_that_exits_fails_at_once_with_its_log(processes: Processes) -> None:
    began = time.monotonic()
    with pytest.raises(ProcessExited, match=r"(?s)exporter exited with code 2.*EVENT_READER"):
        run_exporter(processes, "redis://127.0.0.1:1/0", "--event-reader", "bogus")
    assert time.monotonic() - began < 30  # not the 60 s of the readiness timeout


def test_a_redis_that_cannot_listen_fails_at_once_with_its_log(processes: Processes) -> None:
    port = free_port()
    server = RedisServer(processes, port=port)
    with (
        socket.create_server(("127.0.0.1", port)),  # the port is taken
        pytest.raises(ProcessExited, match=r"(?s)redis-server on \d+ exited.*in use"),
    ):
        server.start()
    server.stop()


def test_a_worker_that_exits_fails_at_once_with_its_log(processes: Processes) -> None:
    began = time.monotonic()
    with pytest.raises(ProcessExited, match=r"(?s)worker broken@127.0.0.1 exited.*such"):
        run_celery(processes, "worker", "broken@127.0.0.1", ["worker", "--no-such-option"],
                   {}, " ready.")  # fmt: skip
    assert time.monotonic() - began < 30  # not the 90 s of the readiness timeout


def test_a_process_that_dies_later_fails_the_next_look_with_its_log(
    processes: Processes,
) -> None:
    go = processes.run_dir / "go"
    script = ("import os, sys, time\nprint('up', flush=True)\n"
              "while not os.path.exists(sys.argv[1]):\n    time.sleep(0.02)\n"
              "sys.exit('gone: asked to')")  # fmt: skip
    child = processes.start(
        ProcessSpec("short-lived", [sys.executable, "-c", script, str(go)]), ready_log="up"
    )
    assert child.alive()
    go.touch()
    with pytest.raises(ProcessExited, match=r"(?s)short-lived exited with code 1.*gone: asked to"):
        wait_for(lambda: not child.alive(), timeout=30)
    assert child.stop() == 1


def test_a_restarted_process_appends_to_its_log_and_waits_for_its_own_words(
    processes: Processes,
) -> None:
    script = "import os, time; print(f'ready {os.getpid()}', flush=True); time.sleep(600)"
    child = processes.start(
        ProcessSpec("steady", [sys.executable, "-c", script]), ready_log="ready"
    )
    first = child.process.pid if child.process else None
    assert child.restart() == -signal.SIGTERM
    second = child.process.pid if child.process else None
    assert first != second and child.alive()
    assert child.log().splitlines() == [f"ready {first}", f"ready {second}"]
    assert child.kill() == -signal.SIGKILL
    with pytest.raises(ProcessExited, match="steady exited with code -9"):
        child.alive()
