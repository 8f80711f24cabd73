"""Every long-running process of a test, started the way `fleetops up` starts it: a ProcessSpec
run by the fleet runner in the test's run directory, its output in ``<name>.log`` there. A
process that dies, while starting or later, fails the test at once with the end of its log."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from fleetops.fleet.manifest import FLEET_ENV, NO_FLEET
from fleetops.fleet.runner import FleetError, FleetRunner, Running
from fleetops.fleet.spec import ProcessSpec
from fleetops.settings import ENV_PREFIX
from tests.helpers import exited

REPO = Path(__file__).resolve().parent.parent
# How much of a log an error shows: the reason a process died is at its end.
LOG_END = 3000


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without any FLEETOPS_ variable (a test sets each one it means), with no
    running fleet to take defaults from, with unbuffered Python output (a log must be complete
    when a process dies), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env["PYTHONUNBUFFERED"] = "1"
    # A fleet someone runs from the repository (runs/current) must not lend its addresses to
    # the fleetops commands a test starts there.
    env[FLEET_ENV] = NO_FLEET
    env.update(extra or {})
    return env


def _log_says(path: Path, text: str) -> Callable[[], bool]:
    """A ready probe: ``text`` in what the log gets from now on, so that a restarted process is
    not taken as ready on its predecessor's words."""
    offset = path.stat().st_size if path.exists() else 0
    wanted = text.encode()

    def probe() -> bool:
        with path.open("rb") as log:
            log.seek(offset)
            return wanted in log.read()

    return probe


def _both(first: Callable[[], bool] | None, second: Callable[[], bool]) -> Callable[[], bool]:
    return second if first is None else lambda: first() and second()


@dataclass
class Child:
    """One process of a test: started, watched, signalled and stopped through the runner."""

    runner: FleetRunner
    spec: ProcessSpec
    env: dict[str, str]
    # How errors name it ("redis-server on 6379"); spec.name names its log file.
    label: str
    # Ready only once the log says this too (Celery says " ready." when it consumes).
    ready_log: str | None = None
    # How Processes.stop() ends it once the test is over (see there).
    teardown_signal: int = signal.SIGTERM
    running: Running | None = None
    stopped: bool = False

    @property
    def log_path(self) -> Path:
        return self.runner.run_dir / f"{self.spec.name}.log"

    @property
    def process(self) -> subprocess.Popen | None:
        return self.running.process if self.running is not None else None

    def start(self, wait: bool = True) -> Child:
        """Start it (again, after stop() or kill(): the log goes on); with ``wait``, return once
        it is ready. Not waiting lets slow starters come up side by side: wait_ready() later."""
        assert self.running is None or self.stopped, f"{self.label} is running already"
        spec = self.spec
        if self.ready_log is not None:
            spec = dataclasses.replace(
                spec, ready=_both(spec.ready, _log_says(self.log_path, self.ready_log))
            )
        self.running = self.runner.launch(spec, self.env)
        self.stopped = False
        return self.wait_ready() if wait else self

    def wait_ready(self) -> Child:
        assert self.running is not None, f"{self.label} was never started"
        try:
            self.runner.wait_ready(self.running)
        except FleetError as error:
            process = self.running.process
            code = process.poll() if process is not None else None
            # Stopped here, whoever started it: a failed start leaves nothing running.
            self.stop()
            if code is not None:
                raise exited(self.label, code, self.log()) from error
            raise FleetError(f"{error}:\n{self.log()[-LOG_END:]}") from error
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        """True while it runs; ProcessExited with the end of its log once it has died (a
        wait_for predicate stops waiting on that)."""
        process = self.process
        assert process is not None, f"{self.label} is not running"
        code = process.poll()
        if code is not None:
            raise exited(self.label, code, self.log())
        return True

    def logged(self, text: str) -> bool:
        """Whether its log says ``text`` yet; ProcessExited once it has died."""
        return self.alive() and text in self.log()

    def kill(self, signum: int = signal.SIGKILL, grace: float = 30.0) -> int | None:
        """Send ``signum`` to its process group and wait until it exits (KILL after ``grace``);
        its exit code. Pool children go with it. Once only: a second call signals nothing,
        since the group's id may belong to another process by then."""
        if self.running is None or self.stopped:
            return self.process.returncode if self.process is not None else None
        self.stopped = True
        return self.runner.stop_one(self.running, grace=grace, signum=signum)

    def stop(self, grace: float = 20.0) -> int | None:
        """TERM, then KILL after ``grace``; its exit code. Harmless when it is not running."""
        return self.kill(signal.SIGTERM, grace=grace)

    def restart(self, grace: float = 30.0) -> int | None:
        """Stop it and start it again, with the same spec and log; the stopped run's exit code."""
        code = self.stop(grace)
        self.start()
        return code


class Processes:
    """The processes of one test, or of one module's or session's fixture, in one run
    directory; stop() ends whatever is still running, newest first."""

    def __init__(self, run_dir: Path) -> None:
        self.runner = FleetRunner(run_dir, say=lambda _line: None)
        self.children: list[Child] = []

    @property
    def run_dir(self) -> Path:
        return self.runner.run_dir

    def start(
        self,
        spec: ProcessSpec,
        env: Mapping[str, str] | None = None,
        *,
        label: str | None = None,
        ready_log: str | None = None,
        wait: bool = True,
        teardown_signal: int = signal.SIGTERM,
    ) -> Child:
        """Start ``spec`` with child_env(env) (and its own spec.env on top), in the repository
        unless the spec names a directory; ready once its probe passes and, with ``ready_log``,
        its log says that text. A second process of the same name gets a log of its own.
        ``teardown_signal`` is what stop() sends it if it still runs then."""
        name = self._unused(spec.name)
        spec = dataclasses.replace(spec, name=name, cwd=spec.cwd or REPO)
        child = Child(self.runner, spec, child_env(env), label or name, ready_log, teardown_signal)
        self.children.append(child)
        return child.start(wait=wait)

    def _unused(self, name: str) -> str:
        taken = {child.spec.name for child in self.children}
        candidate, number = name, 1
        while candidate in taken:
            number += 1
            candidate = f"{name}-{number}"
        return candidate

    def stop(self) -> None:
        """End what still runs, newest first, each with its teardown signal: TERM (then KILL
        after 20 s) unless it was started with another. A test that checks how a process stops
        stops it itself; this is only the cleanup after the test."""
        for child in reversed(self.children):
            child.kill(child.teardown_signal, grace=20.0)


@contextlib.contextmanager
def processes_in(run_dir: Path) -> Iterator[Processes]:
    """Processes that all stop when the block ends, however it ends."""
    started = Processes(run_dir)
    try:
        yield started
    finally:
        started.stop()
