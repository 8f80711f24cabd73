"""Worker groups under real churn: real ``celery worker`` processes with pod-like hostnames come
and go in batches, and an exporter with FLEETOPS_EXPORTER_WORKER_GROUPS keeps one task series
per group, exact counts, and the gauges of the live workers only.

    uv run --frozen python bench/worker_churn.py [--rounds 10] [--batch 4] [--tasks 5]

Each round starts ``--batch`` workers of the project's worker app (solo pool, events on) side by
side, sends ``--tasks`` probe tasks per worker to the maintenance queue, waits until the exporter
counted them, and stops the workers with SIGTERM (a warm shutdown: worker-offline). At the end it
prints what the exporter holds. The suite's test (tests/exporter/test_worker_groups.py) runs
200 workers cheaply in one process; this is the same with a process per worker, too slow for the
suite (2 to 3 s CPU each).

A benchmark, never a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.exporter.process import ExporterProcess, Samples, run_exporter
from tests.helpers import wait_for
from tests.processes import processes_in
from tests.servers import RedisServer, run_worker
from workers.client import client_app

PROBE = "maintenance.probe"
GROUPS = ("images", "reminders")
PATTERN = r"celery@(?P<group>[a-z]+)-[a-z0-9]{8,10}-[a-z0-9]{5}"
WORKER_TIMEOUT = 4


def task_series(samples: Samples, metric: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (name, labels), v in samples.items():
        if name == metric and dict(labels).get("name") == PROBE:
            host = dict(labels)["hostname"]
            out[host] = out.get(host, 0.0) + v
    return out


def hostnames(samples: Samples, metric: str) -> set[str]:
    return {dict(labels)["hostname"] for (name, labels) in samples if name == metric}


def counted(exporter: ExporterProcess) -> float:
    return sum(task_series(exporter.metrics(), "celery_task_succeeded_total").values())


def purged(exporter: ExporterProcess) -> Samples | None:
    """The exporter's samples once no worker gauge is left (every worker went)."""
    samples = exporter.metrics()
    return None if hostnames(samples, "celery_worker_up") else samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=5)
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, processes_in(Path(tmp)) as processes:
        redis = RedisServer(processes).start()
        (Path(tmp) / "data").mkdir()
        env = {
            "FLEETOPS_BROKER_URL": redis.url,
            "FLEETOPS_DATA_DIR": str(Path(tmp) / "data"),
            "FLEETOPS_DATABASE_URL": f"sqlite:///{Path(tmp) / 'data' / 'fleetops.db'}",
        }
        exporter: ExporterProcess = run_exporter(
            processes,
            redis.url,
            env={
                "FLEETOPS_EXPORTER_WORKER_GROUPS": json.dumps([PATTERN]),
                "FLEETOPS_EXPORTER_WORKER_TIMEOUT": str(WORKER_TIMEOUT),
            },
        )
        client = client_app(redis.url, "worker-churn-bench")
        sent = 0
        pod = 0
        for round_ in range(args.rounds):
            workers = []
            for _ in range(args.batch):
                group = GROUPS[pod % len(GROUPS)]
                node = f"celery@{group}-7d9f8b6c4-{pod:05d}"
                workers.append(run_worker(processes, node, "maintenance", env, 1, "solo", False))
                pod += 1
            for worker in workers:
                worker.child.wait_ready()
            for _ in range(args.tasks * args.batch):
                client.send_task(PROBE, kwargs={"duration": 0}, queue="maintenance")
            sent += args.tasks * args.batch
            wait_for(
                lambda total=sent: counted(exporter) >= total,
                timeout=120,
                message=f"round {round_}: {sent} tasks counted",
            )
            for worker in workers:
                worker.child.stop()
            print(f"round {round_ + 1}: {pod} workers so far, {time.monotonic() - started:.0f} s")
        samples = wait_for(
            lambda: purged(exporter),
            timeout=WORKER_TIMEOUT + 30,
            message="the departed workers purged",
        )
        succeeded = task_series(samples, "celery_task_succeeded_total")
        print(f"{pod} workers came and went in {time.monotonic() - started:.0f} s")
        print(f"succeeded by hostname label: {succeeded} (sent {sent})")
        print(f"runtime histogram series: {len(task_series(samples, 'celery_task_runtime_count'))}")
        print(f"worker gauges left: {len(hostnames(samples, 'celery_worker_up'))}")
        print(f"series held: {samples[('fleetops_exporter_series', frozenset())]:.0f}")
        client.close()


if __name__ == "__main__":
    main()
