"""Start processes in order, wait for each to be ready, restart any that exits later (with
backoff), and stop them all on Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fleetops.fleet.spec import ProcessSpec

# How often watch() looks at every process: short enough for sub-second test backoffs.
TICK = 0.1


class FleetError(RuntimeError):
    pass


@dataclass
class Running:
    spec: ProcessSpec
    process: subprocess.Popen | None  # None while it waits in backoff: nothing to signal
    log_path: Path
    env: dict[str, str]
    next_delay: float
    restarts: int = 0
    # Monotonic times. up_since: when it last became ready (None until its probe passes);
    # ready_by: when a restarted process must be ready; restart_at: when to start it again.
    up_since: float | None = None
    ready_by: float = 0.0
    restart_at: float = 0.0


class FleetRunner:
    def __init__(
        self,
        run_dir: Path,
        say: Callable[[str], None] = print,
        initial_delay: float = 1.0,
        max_delay: float = 30.0,
        healthy_after: float = 60.0,
    ) -> None:
        self.run_dir = run_dir
        self.running: list[Running] = []
        self.say = say
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.healthy_after = healthy_after
        run_dir.mkdir(parents=True, exist_ok=True)

    def start(self, spec: ProcessSpec, env: dict[str, str]) -> Running:
        running = self.launch(spec, env)
        self.wait_ready(running)
        return running

    def launch(self, spec: ProcessSpec, env: dict[str, str]) -> Running:
        """Spawn without waiting for readiness, so that slow starters can come up side by side;
        wait_ready() completes what start() does."""
        merged = dict(env)
        merged.update(spec.env)
        log_path = self.run_dir / f"{spec.name}.log"
        running = Running(spec, None, log_path, merged, next_delay=self.initial_delay)
        running.process = self._spawn(running)
        self.running.append(running)
        self._write_manifest()
        return running

    def wait_ready(self, running: Running) -> None:
        """Return once the ready probe passes; FleetError, with the log's tail, if it exits."""
        if running.spec.ready is not None and running.process is not None:
            self._wait_ready(running, running.process)
        running.up_since = time.monotonic()

    def _spawn(self, running: Running) -> subprocess.Popen:
        # Append: a restarted process continues the same log, after its predecessor's last words.
        with running.log_path.open("ab") as log:
            # Own session per child: Ctrl-C reaches the runner only, which then stops each group,
            # so pool children of a worker never outlive the fleet.
            return subprocess.Popen(
                running.spec.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=running.env,
                cwd=running.spec.cwd,
                start_new_session=True,
            )

    def _write_manifest(self) -> None:
        """processes.json: what runs where, for the operator and for cleaning up by hand."""
        manifest = [
            {
                "name": r.spec.name,
                "pid": r.process.pid if r.process is not None else None,
                "url": r.spec.url,
                "log": str(r.log_path),
                "restarts": r.restarts,
            }
            for r in self.running
        ]
        (self.run_dir / "processes.json").write_text(json.dumps(manifest, indent=2))

    def _wait_ready(self, running: Running, process: subprocess.Popen) -> None:
        deadline = time.monotonic() + running.spec.ready_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise FleetError(
                    f"{running.spec.name} exited with code {process.returncode};"
                    f" {_tail(running.log_path, 15)}"
                )
            if running.spec.ready():
                return
            time.sleep(0.1)
        raise FleetError(
            f"{running.spec.name} was not ready after {running.spec.ready_timeout:.0f}s;"
            f" see {running.log_path}"
        )

    def watch(self, stop_after: float | None = None) -> None:
        """Block until Ctrl-C, SIGTERM or ``stop_after`` seconds, restarting what exits."""
        stopping = {"flag": False}

        def request_stop(signum: int, _frame: object) -> None:
            stopping["flag"] = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        started = time.monotonic()
        while not stopping["flag"]:
            for running in self.running:
                self._tend(running)
            if stop_after is not None and time.monotonic() - started > stop_after:
                return
            time.sleep(TICK)

    def _tend(self, running: Running) -> None:
        """One look at one process. Never waits, so one process's backoff or slow start holds
        up neither the others nor Ctrl-C."""
        now = time.monotonic()
        process = running.process
        if process is None:
            if now >= running.restart_at:
                running.process = self._spawn(running)
                running.restarts += 1
                running.ready_by = now + running.spec.ready_timeout
                self._write_manifest()
        elif process.poll() is not None:
            self._schedule_restart(running, process, f"exited with code {process.returncode}")
        elif running.up_since is None:
            if running.spec.ready is None or running.spec.ready():
                running.up_since = time.monotonic()
                self.say(f"fleet: {running.spec.name} restarted (pid {process.pid})")
            elif now > running.ready_by:
                # Hung on its way up: as broken as a crash, so it takes the same backoff.
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout=5)
                timeout = running.spec.ready_timeout
                self._schedule_restart(running, process, f"was not ready after {timeout:g}s")

    def _schedule_restart(self, running: Running, process: subprocess.Popen, what: str) -> None:
        # Pool children may outlive their parent and hold its port; the group goes with it.
        _signal_group(process, signal.SIGKILL)
        now = time.monotonic()
        if running.up_since is not None and now - running.up_since >= self.healthy_after:
            # It served for a while: a fresh failure, not the same crash loop, so start over.
            running.next_delay = self.initial_delay
        delay = running.next_delay
        running.next_delay = min(delay * 2, self.max_delay)
        running.process = None
        running.up_since = None
        running.restart_at = now + delay
        self._write_manifest()
        self.say(
            f"fleet: {running.spec.name} {what}; restarting in {delay:g}s"
            f" (restart {running.restarts + 1}); {_tail(running.log_path, 5)}"
        )

    def stop(self, grace: float = 10.0) -> None:
        # Processes waiting in backoff have nothing to signal; clearing the list below is what
        # stops them: nothing restarts once watch() has returned.
        live = [r.process for r in reversed(self.running) if r.process is not None]
        _end(live, signal.SIGTERM, grace)
        self.running.clear()

    def stop_one(
        self, running: Running, grace: float = 10.0, signum: int = signal.SIGTERM
    ) -> int | None:
        """Stop one process as stop() stops them all, with ``signum`` first; its exit code (None
        when it was waiting in backoff). The others, and the fleet's watch, go on."""
        self.running[:] = [r for r in self.running if r is not running]
        self._write_manifest()
        if running.process is None:
            return None
        _end([running.process], signum, grace)
        return running.process.returncode


def _end(processes: list[subprocess.Popen], signum: int, grace: float) -> None:
    """Signal every group at once, then wait for each: ``grace`` in all, KILL for the late."""
    for process in processes:
        _signal_group(process, signum)
    deadline = time.monotonic() + grace
    for process in processes:
        remaining = max(0.1, deadline - time.monotonic())
        try:
            process.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=5)
        # Pool children may linger after their parent exits; the group goes with it.
        _signal_group(process, signal.SIGKILL)


def _tail(log_path: Path, lines: int) -> str:
    """The last lines of a log, read from its end: a crash loop must not reread a huge log."""
    with log_path.open("rb") as log:
        log.seek(max(0, log_path.stat().st_size - 16384))
        tail = log.read().decode(errors="replace").splitlines()[-lines:]
    return f"last lines of {log_path}:\n    " + "\n    ".join(tail)


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)
