"""The fleet runner restarts a process that exits, with a growing backoff, and says so; real
processes (``python -c``), small delays."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from fleetops.fleet.runner import FleetError, FleetRunner
from fleetops.fleet.spec import ProcessSpec
from tests.helpers import wait_for

# Appends its start time to argv[1], says something for the log tail, exits 1 at once.
CRASHER = """
import sys, time
with open(sys.argv[1], "a") as starts:
    starts.write(f"{time.time()}\\n")
print("boom", flush=True)
sys.exit(1)
"""
STEADY = "import time; time.sleep(600)"
# Runs 1-3 exit at once, run 4 stays up for a while (longer than healthy_after), then exits.
FLAKY = """
import sys, time
with open(sys.argv[1], "a+") as starts:
    starts.seek(0)
    run = len(starts.readlines()) + 1
    starts.write(f"{run}\\n")
if run == 4:
    time.sleep(2.5)
sys.exit(1)
"""
# Run 1 becomes ready and exits 3 once the test allows it; run 2 never becomes ready;
# run 3 becomes ready and stays up.
PROBED = """
import os, sys, time
starts, marker, go = sys.argv[1:]
with open(starts, "a+") as f:
    f.seek(0)
    run = len(f.readlines()) + 1
    f.write(f"{os.getpid()}\\n")
print(f"run {run}", flush=True)
if run == 1:
    open(marker, "w").close()
    while not os.path.exists(go):
        time.sleep(0.02)
    os.remove(marker)
    sys.exit(3)
if run == 3:
    open(marker, "w").close()
time.sleep(600)
"""


@pytest.fixture(autouse=True)
def _restore_signal_handlers() -> Iterator[None]:
    # watch() takes over SIGINT/SIGTERM; give them back so Ctrl-C still stops pytest.
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


class Fleet:
    def __init__(self, run_dir: Path, **delays: float) -> None:
        self.said: list[str] = []
        self.runner = FleetRunner(run_dir, say=self.said.append, **delays)

    def start(self, name: str, script: str, *args: object, **spec: object) -> psutil.Process:
        argv = [sys.executable, "-c", script, *map(str, args)]
        running = self.runner.start(ProcessSpec(name, argv, **spec), dict(os.environ))  # type: ignore[arg-type]
        assert running.process is not None
        return psutil.Process(running.process.pid)

    def watching(self, condition: Callable[[], object]) -> Callable[[], object]:
        """A wait_for predicate that keeps watch() running between looks at ``condition``."""

        def predicate() -> object:
            self.runner.watch(stop_after=0.05)
            return condition()

        return predicate

    def manifest(self) -> dict[str, dict]:
        entries = json.loads((self.runner.run_dir / "processes.json").read_text())
        return {entry["name"]: entry for entry in entries}

    def lines_about(self, name: str, event: str) -> list[str]:
        return [line for line in self.said if line.startswith(f"fleet: {name} {event}")]


@pytest.fixture
def make_fleet(tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    fleets: list[Fleet] = []

    def make(**delays: float) -> Fleet:
        fleets.append(Fleet(tmp_path / "run", **delays))
        return fleets[-1]

    yield make
    for fleet in fleets:
        fleet.runner.stop()


def _delays(lines: list[str]) -> list[float]:
    return [float(re.search(r"restarting in ([\d.]+)s", line)[1]) for line in lines]  # type: ignore[index]


def test_exiting_process_is_restarted_with_growing_capped_backoff(
    make_fleet: Callable[..., Fleet], tmp_path: Path
):
    fleet = make_fleet(initial_delay=0.2, max_delay=1.0, healthy_after=60)
    starts = tmp_path / "starts"
    steady = fleet.start("steady", STEADY)
    fleet.start("crasher", CRASHER, starts)

    def start_times() -> list[float]:
        return [float(line) for line in starts.read_text().split()]

    wait_for(fleet.watching(lambda: len(start_times()) >= 7), timeout=60, interval=0.01)

    # Delays 0.2, 0.4, 0.8, 1.0, 1.0, 1.0 plus a process start each: growing, then capped.
    times = start_times()
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    tolerance = 0.15  # a busy machine starts one python slower than the next
    assert all(b >= a - tolerance for a, b in itertools.pairwise(gaps)), gaps
    assert gaps[-1] >= 2 * gaps[0], gaps
    assert gaps[-1] < 1.0 + 0.8, gaps  # the cap holds (uncapped it would be 6.4s)

    exits = fleet.lines_about("crasher", "exited")
    log = tmp_path / "run" / "crasher.log"
    assert exits[0].startswith(
        f"fleet: crasher exited with code 1; restarting in 0.2s (restart 1); last lines of {log}:"
    ), exits[0]
    assert exits[0].endswith("\n    boom"), exits[0]
    assert "restarting in 0.4s (restart 2)" in exits[1]
    assert "restarting in 0.8s (restart 3)" in exits[2]
    assert "restarting in 1s (restart 4)" in exits[3]
    assert _delays(exits)[3:] == [1.0] * (len(exits) - 3)
    assert not fleet.lines_about("steady", "")
    # The same log, appended to by every run.
    assert log.read_text().split().count("boom") >= 7

    manifest = fleet.manifest()
    assert manifest["crasher"]["restarts"] >= 6
    assert manifest["steady"] == {**manifest["steady"], "pid": steady.pid, "restarts": 0}
    assert steady.is_running()


def test_stop_ends_a_process_waiting_in_backoff(make_fleet: Callable[..., Fleet], tmp_path: Path):
    fleet = make_fleet(initial_delay=30, max_delay=30)
    starts = tmp_path / "starts"
    steady = fleet.start("steady", STEADY)
    fleet.start("crasher", CRASHER, starts)
    began = time.monotonic()
    wait_for(fleet.watching(lambda: fleet.lines_about("crasher", "exited")), interval=0.01)
    fleet.runner.watch(stop_after=0.05)
    # The loop goes on while one process sits out its backoff: nothing waited for the 30s.
    assert time.monotonic() - began < 10
    assert "restarting in 30s (restart 1)" in fleet.said[0]
    assert fleet.manifest()["crasher"]["pid"] is None  # nothing runs while it waits

    began = time.monotonic()
    fleet.runner.stop()
    assert time.monotonic() - began < 5  # did not sit out the backoff
    assert fleet.runner.running == []
    with pytest.raises(psutil.NoSuchProcess):
        steady.status()
    assert len(starts.read_text().split()) == 1  # never restarted


def test_backoff_resets_after_the_process_stayed_up(
    make_fleet: Callable[..., Fleet], tmp_path: Path
):
    fleet = make_fleet(initial_delay=0.2, max_delay=5.0, healthy_after=1.0)
    fleet.start("flaky", FLAKY, tmp_path / "starts")
    wait_for(
        fleet.watching(lambda: len(fleet.lines_about("flaky", "exited")) >= 5),
        timeout=60,
        interval=0.01,
    )
    # Run 4 stayed up 2.5s > healthy_after, so its exit starts the backoff over.
    assert _delays(fleet.lines_about("flaky", "exited"))[:5] == [0.2, 0.4, 0.8, 0.2, 0.4]


def test_restarted_process_is_announced_once_ready_and_killed_when_never_ready(
    make_fleet: Callable[..., Fleet], tmp_path: Path
):
    fleet = make_fleet(initial_delay=0.2, max_delay=5.0)
    starts, marker, go = tmp_path / "starts", tmp_path / "ready", tmp_path / "go"
    fleet.start("probed", PROBED, starts, marker, go, ready=marker.exists, ready_timeout=2.0)
    go.touch()

    wait_for(fleet.watching(lambda: fleet.lines_about("probed", "restarted")), interval=0.01)
    pids = [int(pid) for pid in starts.read_text().split()]
    assert len(pids) == 3
    assert fleet.said[0].startswith("fleet: probed exited with code 3; restarting in 0.2s")
    assert fleet.said[1].startswith(
        "fleet: probed was not ready after 2s; restarting in 0.4s (restart 2); last lines of"
    )
    assert fleet.said[1].endswith("\n    run 2"), fleet.said[1]
    assert fleet.said[2:] == [f"fleet: probed restarted (pid {pids[2]})"]
    assert not psutil.pid_exists(pids[1])  # the one that never got ready was killed
    assert fleet.manifest()["probed"]["pid"] == pids[2]
    assert fleet.manifest()["probed"]["restarts"] == 2
    log = (tmp_path / "run" / "probed.log").read_text()
    assert log.split("\n")[:3] == ["run 1", "run 2", "run 3"]


def test_process_that_exits_before_it_was_ever_ready_fails_the_start(
    make_fleet: Callable[..., Fleet], tmp_path: Path
):
    fleet = make_fleet(initial_delay=0.2)
    with pytest.raises(FleetError, match=r"crasher exited with code 1; last lines of .*\n +boom"):
        fleet.start("crasher", CRASHER, tmp_path / "starts", ready=lambda: False)
    assert fleet.said == []
