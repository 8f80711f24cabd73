"""The README's fleet command: every process of the data flow starts, the load flows through
workers to Prometheus, and Ctrl-C leaves no orphan."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import httpx
import psutil
from sqlalchemy import create_engine, text

from fleetops.fleet.spec import ProcessSpec
from tests.helpers import wait_for
from tests.processes import Processes

# workers -> broker -> exporter/Flower -> Prometheus -> console/Alertmanager -> pager
EXPECTED_PROCESSES = (
    "redis", "worker-images", "worker-reminders", "beat", "load", "flower", "exporter",
    "recorder", "pager", "alertmanager", "prometheus", "console",
)  # fmt: skip


def _scraped_jobs(prometheus: str) -> set[str]:
    targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=5).json()["data"]
    return {t["labels"]["job"] for t in targets["activeTargets"] if t["health"] == "up"}


def _group_members(pgids: set[int]) -> list[psutil.Process]:
    alive = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) in pgids:
                alive.append(process)
        except (ProcessLookupError, psutil.Error):
            continue
    return alive


def test_fleet_runs_load_through_workers_and_stops_every_process(
    processes: Processes, tmp_path: Path
):
    run_dir = tmp_path / "run"
    env = {"FLEETOPS_REMINDER_INTERVAL_SECONDS": "5", "FLEETOPS_PROMETHEUS_SCRAPE_INTERVAL": "2s"}
    argv = [sys.executable, "-m", "fleetops", "up", "--run-dir", str(run_dir), "--load", "steady"]
    # Ready once it says so; a fleet that fails to come up exits, and the test fails at once.
    # Started from tmp_path, so that its runs/current is there, not in the repository.
    spec = ProcessSpec("fleetops-up", argv, cwd=tmp_path, ready_timeout=240)
    fleet = processes.start(spec, env, ready_log="the fleet is running")
    pointer = tmp_path / "runs" / "current"
    try:
        output = fleet.log()
        assert pointer.resolve() == run_dir.resolve()
        for name in EXPECTED_PROCESSES:
            assert f"ready  {name}" in output, output
        manifest = json.loads((run_dir / "processes.json").read_text())
        pgids = {entry["pid"] for entry in manifest}
        urls = {entry["name"]: entry["url"] for entry in manifest}

        database = create_engine(f"sqlite:///{run_dir / 'data' / 'fleetops.db'}")

        def processed_images() -> int:
            # `fleetops up` exits only on a failure here: waiting on would just time out.
            fleet.alive()
            with database.connect() as conn:
                return conn.execute(
                    text("select count(*) from images where status='done'")
                ).scalar()

        def scraped() -> bool:
            fleet.alive()
            return {"fleetops-exporter", "flower"} <= _scraped_jobs(urls["prometheus"])

        wait_for(lambda: processed_images() >= 3, timeout=120, message="uploads processed")
        wait_for(scraped, timeout=90, message="Prometheus scraping the exporter and Flower")
        console = httpx.get(f"{urls['console']}/_stcore/health", timeout=5)
        assert console.status_code == 200
    finally:
        code = fleet.kill(signal.SIGINT, grace=60)
    rest = fleet.log()
    assert code == 0, rest
    assert "stopped every process" in rest
    assert not pointer.is_symlink(), "runs/current outlives the fleet"
    assert _group_members(pgids) == []
    for entry in manifest:
        assert Path(entry["log"]).exists()
