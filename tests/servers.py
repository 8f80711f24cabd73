"""Real servers and processes for tests, each on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.helpers import exited, wait_for

REPO = Path(__file__).resolve().parent.parent


@dataclass
class RedisServer:
    port: int
    directory: Path
    process: subprocess.Popen | None = None
    # Started with requirepass when set: a URL with a password fails AUTH on a Redis without.
    password: str | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.directory / f"redis-{self.port}.log"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, password=self.password)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; scripts/test installs it")
        # Redis logs to stdout: kept in a file, so a server that dies (a port taken, a bad
        # option) fails the test with its reason instead of a timeout.
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                 "--appendonly", "no", "--dir", str(self.directory),
                 *(["--requirepass", self.password] if self.password else [])],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for(self._answers, timeout=20, message=f"redis on {self.port}")

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise exited(f"redis-server on {self.port}", self.process.returncode, self.log())
        # Short, and no retries (redis-py's own take half a minute): a ping to a port that
        # something else holds must not outlast the server we started.
        probe = redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                            socket_timeout=2, socket_connect_timeout=2,
                            retry=Retry(NoBackoff(), 0))  # fmt: skip
        try:
            return bool(probe.ping())
        finally:
            probe.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@dataclass
class CeleryProcess:
    """A real ``celery worker`` or ``celery beat`` process."""

    kind: str
    hostname: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None
    extra: dict = field(default_factory=dict)

    def start(self) -> CeleryProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def logged(self, text: str) -> bool:
        """Whether the log says ``text`` yet: a readiness predicate for wait_for that raises
        ProcessExited, with the log's end, once the process has died."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise exited(f"{self.kind} {self.hostname}", self.process.returncode, self.log())
        return text in self.log()

    def kill(self, signum: int = signal.SIGKILL) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self._reap()
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=20)
        self._reap()

    def _reap(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


def celery_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "workers.app", *args]


def worker_ready(worker: CeleryProcess) -> bool:
    return worker.logged(" ready.")


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"
