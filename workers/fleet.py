"""The workers' processes in the local fleet: an image worker, a reminder worker, Beat, load."""

from __future__ import annotations

import sys

from fleetops.fleet.spec import FleetContext, ProcessSpec

# The load scenario `fleetops up` and `fleetops load` run when none is named (one of
# workers.load.SCENARIOS); here, in a light module, because both CLIs show it in their help.
DEFAULT_SCENARIO = "steady"


def _celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "workers.app", *args]


def _worker_ready(ctx: FleetContext, name: str):  # type: ignore[no-untyped-def]
    log = ctx.run_dir / f"{name}.log"
    return lambda: log.exists() and " ready." in log.read_text(errors="replace")


def processes(ctx: FleetContext) -> list[ProcessSpec]:
    scenario = ctx.env.get("FLEETOPS_LOAD_SCENARIO", DEFAULT_SCENARIO)
    specs = [
        ProcessSpec(
            "worker-images",
            _celery("worker", "-Q", "images", "-n", "images@%h", "-c", "2", "--loglevel=INFO"),
            ready=_worker_ready(ctx, "worker-images"),
        ),
        ProcessSpec(
            "worker-reminders",
            _celery(
                "worker",
                "-Q",
                "reminders,maintenance",
                "-n",
                "reminders@%h",
                "-c",
                "1",
                "--loglevel=INFO",
            ),
            ready=_worker_ready(ctx, "worker-reminders"),
        ),
        ProcessSpec(
            "beat",
            _celery("beat", "--loglevel=INFO", "-s", str(ctx.run_dir / "beat-schedule")),
        ),
    ]
    if scenario != "none":
        specs.append(
            ProcessSpec(
                "load",
                [sys.executable, "-m", "fleetops", "load", "--scenario", scenario, "--rate", "1"],
            )
        )
    return specs
