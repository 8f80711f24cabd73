"""Redis and Celery processes for tests, each on a free loopback port, started through
tests.processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from fleetops.fleet.broker import redis_server_binary
from fleetops.fleet.spec import ProcessSpec, free_port
from tests.processes import REPO, Child, Processes

__all__ = ["REPO", "CeleryProcess", "RedisServer", "celery_argv", "run_beat", "run_worker"]

# Celery takes a while to import and connect on a busy machine.
CELERY_READY_TIMEOUT = 90.0


@dataclass
class RedisServer:
    processes: Processes
    port: int = field(default_factory=free_port)
    # Started with requirepass when set: a URL with a password fails AUTH on a Redis without.
    password: str | None = None
    child: Child | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, password=self.password)

    def log(self) -> str:
        return self.child.log() if self.child is not None else ""

    def start(self) -> RedisServer:
        """Start it, or start it again on the same port after stop()."""
        if self.child is not None:
            self.child.start()
            return self
        # No snapshots: a test's Redis starts empty, also when a test restarts it.
        argv = [redis_server_binary(), "--bind", "127.0.0.1", "--port", str(self.port),
                "--save", "", "--appendonly", "no", "--dir", str(self.processes.run_dir),
                *(["--requirepass", self.password] if self.password else [])]  # fmt: skip
        spec = ProcessSpec(f"redis-{self.port}", argv, ready=self._answers, ready_timeout=20)
        self.child = self.processes.start(spec, label=f"redis-server on {self.port}")
        return self

    def _answers(self) -> bool:
        # Short, and no retries (redis-py's own take half a minute): a ping to a port that
        # something else holds must not outlast the server we started.
        probe = redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                            socket_timeout=2, socket_connect_timeout=2,
                            retry=Retry(NoBackoff(), 0))  # fmt: skip
        try:
            return bool(probe.ping())
        except redis.exceptions.RedisError:
            return False
        finally:
            probe.close()

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(grace=10)


@dataclass
class CeleryProcess:
    """A real ``celery worker`` or ``celery beat`` process."""

    kind: str
    hostname: str
    child: Child

    @property
    def process(self) -> subprocess.Popen | None:
        return self.child.process

    def log(self) -> str:
        return self.child.log()

    def logged(self, text: str) -> bool:
        """Whether the log says ``text`` yet: a readiness predicate for wait_for that raises
        ProcessExited, with the log's end, once the process has died."""
        return self.child.logged(text)

    def kill(self, signum: int = signal.SIGKILL) -> None:
        self.child.kill(signum)

    def stop(self) -> None:
        self.child.stop()


def celery_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "workers.app", *args]


def run_celery(
    processes: Processes,
    kind: str,
    hostname: str,
    args: list[str],
    env: dict[str, str],
    ready_log: str,
    wait: bool = True,
) -> CeleryProcess:
    """``celery -A workers.app <args>``, ready once its log says ``ready_log``."""
    spec = ProcessSpec(
        hostname if kind == "worker" else kind,
        celery_argv(*args),
        ready_timeout=CELERY_READY_TIMEOUT,
    )
    # Killed when the test is over: nothing reads a warm shutdown then, and one costs a worker
    # 2-3 s of a busy machine (Beat about 2 s), tens of times in a run of the suite. Its pool
    # processes are in its process group and go with it.
    child = processes.start(spec, env, label=f"{kind} {hostname}", ready_log=ready_log, wait=wait,
                            teardown_signal=signal.SIGKILL)  # fmt: skip
    return CeleryProcess(kind, hostname, child)


def run_worker(
    processes: Processes,
    node: str,
    queues: str,
    env: dict[str, str],
    concurrency: int = 2,
    pool: str = "prefork",
    wait: bool = True,
) -> CeleryProcess:
    """A worker sending events, without mingle and gossip (nothing to agree on in a test)."""
    args = ["worker", "-Q", queues, "-n", node, "-c", str(concurrency), "-P", pool,
            "--loglevel=INFO", "-E", "--without-mingle", "--without-gossip"]  # fmt: skip
    return run_celery(processes, "worker", node, args, env, " ready.", wait=wait)


def run_beat(
    processes: Processes, schedule: Path, env: dict[str, str], wait: bool = True
) -> CeleryProcess:
    args = ["beat", "--loglevel=INFO", "-s", str(schedule)]
    return run_celery(processes, "beat", "beat", args, env, "beat: Starting", wait=wait)


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"
