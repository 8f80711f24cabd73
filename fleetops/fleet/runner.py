"""Start processes in order, wait for each to be ready, stop them all on Ctrl-C or a crash."""

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


class FleetError(RuntimeError):
    pass


@dataclass
class Running:
    spec: ProcessSpec
    process: subprocess.Popen
    log_path: Path


class FleetRunner:
    def __init__(self, run_dir: Path, say: Callable[[str], None] = print) -> None:
        self.run_dir = run_dir
        self.running: list[Running] = []
        self.say = say
        run_dir.mkdir(parents=True, exist_ok=True)

    def start(self, spec: ProcessSpec, env: dict[str, str]) -> Running:
        log_path = self.run_dir / f"{spec.name}.log"
        log = log_path.open("ab")
        merged = dict(env)
        merged.update(spec.env)
        # Own session per child: Ctrl-C reaches the runner only, which then stops each group,
        # so pool children of a worker never outlive the fleet.
        process = subprocess.Popen(
            spec.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=merged,
            cwd=spec.cwd,
            start_new_session=True,
        )
        log.close()
        running = Running(spec, process, log_path)
        self.running.append(running)
        self._write_manifest()
        if spec.ready is not None:
            self._wait_ready(running)
        return running

    def _write_manifest(self) -> None:
        """processes.json: what runs where, for the operator and for cleaning up by hand."""
        manifest = [
            {"name": r.spec.name, "pid": r.process.pid, "url": r.spec.url, "log": str(r.log_path)}
            for r in self.running
        ]
        (self.run_dir / "processes.json").write_text(json.dumps(manifest, indent=2))

    def _wait_ready(self, running: Running) -> None:
        deadline = time.monotonic() + running.spec.ready_timeout
        while time.monotonic() < deadline:
            if running.process.poll() is not None:
                raise FleetError(self._crash_report(running))
            if running.spec.ready():
                return
            time.sleep(0.1)
        raise FleetError(
            f"{running.spec.name} was not ready after {running.spec.ready_timeout:.0f}s;"
            f" see {running.log_path}"
        )

    def _crash_report(self, running: Running) -> str:
        tail = running.log_path.read_text(errors="replace").splitlines()[-15:]
        return (
            f"{running.spec.name} exited with code {running.process.returncode};"
            f" last lines of {running.log_path}:\n    " + "\n    ".join(tail)
        )

    def watch(self, stop_after: float | None = None) -> None:
        """Block until Ctrl-C, SIGTERM, a crashed process or ``stop_after`` seconds."""
        stopping = {"flag": False}

        def request_stop(signum: int, _frame: object) -> None:
            stopping["flag"] = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        started = time.monotonic()
        while not stopping["flag"]:
            for running in self.running:
                if running.process.poll() is not None:
                    raise FleetError(self._crash_report(running))
            if stop_after is not None and time.monotonic() - started > stop_after:
                return
            time.sleep(0.2)

    def stop(self, grace: float = 10.0) -> None:
        for running in reversed(self.running):
            _signal_group(running.process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for running in reversed(self.running):
            remaining = max(0.1, deadline - time.monotonic())
            try:
                running.process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                _signal_group(running.process, signal.SIGKILL)
                running.process.wait(timeout=5)
            # Pool children may linger after their parent exits; the group goes with it.
            _signal_group(running.process, signal.SIGKILL)
        self.running.clear()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)
