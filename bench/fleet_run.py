"""What the signal-quality benchmarks share: the whole local fleet, started exactly as
``fleetops up`` starts it, the pager's record of what it was sent, and Prometheus' raw samples.

bench/time_to_page.py measures how long a queue past its breaking point takes to page;
bench/steady_load.py runs the fleet under its default load and lists what paged. Both start the
fleet through the ``fleetops up`` command itself (as tests/fleet/test_fleet_command.py does), so
they measure the shipped defaults: the rendered Prometheus and Alertmanager configuration, the
exporter's poll interval and the pager are the ones a user runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx
import orjson

from bench.harness import wait_for

# `fleetops up` starts a dozen processes side by side on a machine that may be busy.
READY_TIMEOUT = 300.0
# `fleetops up` stops every process within its own grace (10 s) after SIGINT; more is a hang.
STOP_TIMEOUT = 60.0
WATCHDOG_CHANNEL = "watchdog"


def stop_on_signals() -> None:
    """SIGINT and SIGTERM end a benchmark like Ctrl-C does, through the ``finally`` that stops
    the fleet: a benchmark run in the background and killed must not leave a fleet behind. SIGINT
    is set explicitly because a shell starts background jobs with it ignored."""

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


@dataclass
class LocalFleet:
    run_dir: Path
    process: subprocess.Popen
    log_path: Path
    urls: dict[str, str]  # process name -> the URL `fleetops up` shows for it
    broker_url: str

    def base(self, name: str) -> str:
        """The process's address without the path `fleetops up` shows (/metrics, /pages)."""
        url = httpx.URL(self.urls[name])
        return f"{url.scheme}://{url.netloc.decode()}"

    @property
    def pages_log(self) -> Path:
        # alerts/stack.py render_stack: the pager's append-only JSON-lines log.
        return self.run_dir / "alerting" / "pages.jsonl"

    def alive(self) -> None:
        """Raise with the log's tail if `fleetops up` exited: its fleet is gone with it."""
        if self.process.poll() is not None:
            raise RuntimeError(
                f"fleetops up exited with code {self.process.returncode}:\n{tail(self.log_path)}"
            )

    def notifications(self) -> list[dict]:
        """Every alert the pager received so far, oldest first (one entry per alert per
        notification: ``channel`` is page, ticket or watchdog)."""
        if not self.pages_log.exists():
            return []
        return [orjson.loads(line) for line in self.pages_log.read_bytes().splitlines() if line]

    def restarts(self) -> dict[str, int]:
        """Processes the fleet runner had to restart, and how often."""
        entries = json.loads((self.run_dir / "processes.json").read_text())
        return {e["name"]: e["restarts"] for e in entries if e["restarts"]}


def tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def local_fleet(load: str, prefix: str, keep: bool = False) -> Iterator[LocalFleet]:
    """``fleetops up --load <load>`` in a temporary directory, with every setting at its default
    (the caller's FLEETOPS_* variables are left out); stopped, every process of it, on the way
    out, Ctrl-C and SIGTERM included. ``keep`` keeps the run directory (logs, pages.jsonl)."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    run_dir = workdir / "run"
    log_path = workdir / "fleetops-up.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETOPS_")}
    # Any free ports: a fleet of the user's (or a test's) may hold the preferred ones.
    argv = [sys.executable, "-m", "fleetops", "up", "--run-dir", str(run_dir), "--load", load,
            "--any-port"]  # fmt: skip
    with log_path.open("ab") as log:
        # Its own session: a Ctrl-C meant for the benchmark reaches `up` only through stop(),
        # so the benchmark still gets to read what it needs and to stop it in order.
        process = subprocess.Popen(
            argv, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    fleet = None
    try:
        print(f"starting the fleet: fleetops up --load {load} (logs in {run_dir})", flush=True)

        def running() -> bool:
            if process.poll() is not None:
                raise SystemExit(f"fleetops up exited:\n{tail(log_path)}")
            return "the fleet is running" in log_path.read_text(errors="replace")

        wait_for(running, READY_TIMEOUT, "fleetops up to start every process")
        entries = json.loads((run_dir / "processes.json").read_text())
        manifest = json.loads((run_dir / "fleet.json").read_text())
        fleet = LocalFleet(
            run_dir=run_dir,
            process=process,
            log_path=log_path,
            urls={e["name"]: e["url"] for e in entries if e["url"]},
            broker_url=manifest["env"]["FLEETOPS_BROKER_URL"],
        )
        yield fleet
    finally:
        stop(process, run_dir)
        if keep:
            print(f"kept the run directory {workdir}")
        else:
            subprocess.run(["rm", "-rf", str(workdir)], check=False)


def stop(process: subprocess.Popen, run_dir: Path) -> None:
    """SIGINT, as Ctrl-C in `fleetops up`'s terminal; if it hangs, KILL it and every process
    group it started (each child leads its own group; processes.json lists them)."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT)
            return
        except subprocess.TimeoutExpired:
            print(f"fleetops up did not stop within {STOP_TIMEOUT:g}s: killing its processes")
            process.kill()
            process.wait(timeout=10)
    manifest = run_dir / "processes.json"
    if manifest.exists():
        for entry in json.loads(manifest.read_text()):
            if entry["pid"]:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(entry["pid"], signal.SIGKILL)


# ---- Prometheus ------------------------------------------------------------------------------


def prometheus_query(base: str, promql: str, at: float | None = None) -> list[dict]:
    params = {"query": promql}
    if at is not None:
        params["time"] = f"{at:.3f}"
    answer = httpx.get(f"{base}/api/v1/query", params=params, timeout=30).json()
    if answer.get("status") != "success":
        raise RuntimeError(f"Prometheus refused {promql!r}: {answer}")
    return answer["data"]["result"]


def raw_samples(base: str, selector: str, window: str, at: float) -> list[tuple[float, float]]:
    """Every stored sample of one series in ``window`` before ``at``: (time, value), with the
    scrape's (or the rule evaluation's) own timestamp."""
    result = prometheus_query(base, f"{selector}[{window}]", at)
    if not result:
        return []
    return [(float(t), float(v)) for t, v in result[0]["values"]]


def scraping(base: str, job: str) -> bool:
    """Whether Prometheus has scraped ``job`` successfully at least once."""
    targets = httpx.get(f"{base}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    return any(t["labels"].get("job") == job and t["health"] == "up" for t in targets)


def utc(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 10)}"
