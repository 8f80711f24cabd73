"""Orphaned, stuck and twice-run tasks and the visibility-timeout trap, on a real fleet: real
Redis, real ``celery worker`` processes (acks_late, a visibility timeout of 6 s) and a real
exporter, as the on-call person would see them on /metrics.

One Redis, one exporter and two workers, started side by side, serve the whole module (each
test compares the counters before and after): the steady worker, which also rescues the task
of the victim, killed in the first test on a queue of its own.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from celery import Celery

from tests.exporter.process import ExporterProcess, Samples, run_exporter, value
from tests.helpers import wait_for
from tests.processes import processes_in
from tests.servers import CeleryProcess, RedisServer, run_worker
from workers.client import client_app

PROBE = "maintenance.probe"
VISIBILITY_TIMEOUT = 6  # seconds: Redis hands an unacknowledged task out again after this
WORKER_TIMEOUT = 6  # seconds without a heartbeat before the exporter takes a worker for down
STUCK_BOUND = 3.0  # seconds the probe may run before it is stuck


@dataclass
class Fleet:
    exporter: ExporterProcess
    steady: CeleryProcess  # a worker on the maintenance queue that nobody kills
    victim: CeleryProcess  # a worker on the reminders queue, killed in the middle of a task
    client: Celery


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    run_dir = tmp_path_factory.mktemp("task-faults")
    with processes_in(run_dir) as processes:
        redis = RedisServer(processes).start()
        (run_dir / "data").mkdir()
        env = {
            "FLEETOPS_BROKER_URL": redis.url,
            "FLEETOPS_DATA_DIR": str(run_dir / "data"),
            "FLEETOPS_DATABASE_URL": f"sqlite:///{run_dir / 'data' / 'fleetops.db'}",
            "FLEETOPS_BROKER_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
            # Workers refuse a retry backoff that could outlast the visibility timeout.
            "FLEETOPS_RETRY_BACKOFF_SECONDS": "1",
            "FLEETOPS_RETRY_BACKOFF_MAX_SECONDS": "2",
            "FLEETOPS_TELEMETRY_INTERVAL": "1",
        }
        faults = {
            "FLEETOPS_EXPORTER_WORKER_TIMEOUT": str(WORKER_TIMEOUT),
            "FLEETOPS_EXPORTER_STUCK_BOUNDS": f'{{"{PROBE}": {STUCK_BOUND}}}',
        }
        # Side by side: each takes seconds to start on a busy machine.
        exporter = run_exporter(processes, redis.url, env=faults, wait=False)
        steady = run_worker(processes, "steady@127.0.0.1", "maintenance", env, wait=False)
        victim = run_worker(processes, "victim@127.0.0.1", "reminders", env, 1, wait=False)
        for child in (exporter.child, steady.child, victim.child):
            child.wait_ready()
        app = client_app(redis.url, "task-faults-test")
        yield Fleet(exporter, steady, victim, app)
        app.close()


def reader(exporter: ExporterProcess, queue: str) -> Callable[..., float | None]:
    """The probe's sample of ``metric`` in ``queue``; fails at once when the exporter died."""

    def read(metric: str, samples: Samples | None = None, **labels: str) -> float | None:
        exporter.alive()
        got = exporter.metrics() if samples is None else samples
        return value(got, metric, name=PROBE, queue_name=queue, **labels)

    return read


def succeeded(worker: CeleryProcess, task_id: str) -> int:
    worker.child.alive()
    return worker.log().count(f"Task {PROBE}[{task_id}] succeeded")


def test_a_task_of_a_killed_worker_is_orphaned_then_redelivered_and_run_twice(
    fleet: Fleet,
) -> None:
    read = reader(fleet.exporter, "reminders")
    task = fleet.client.send_task(PROBE, kwargs={"duration": 4.0}, queue="reminders")
    wait_for(lambda: read("fleetops_task_running_longest_seconds") is not None,
             timeout=60, message="the exporter sees the task run on the victim")  # fmt: skip
    assert read("fleetops_tasks_orphaned") == 0
    fleet.victim.kill(signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: read("fleetops_tasks_orphaned") == 1, timeout=60,
             message="the task reported orphaned")  # fmt: skip
    # Heartbeats come every 2 s and housekeeping runs every second: the worker timeout, plus
    # a heartbeat and a round of housekeeping at most (measured 6 to 6.5 s), plus ample room
    # for a busy machine; far below what anything but the worker timeout could take (the
    # purge of silent workers, 600 s).
    orphaned_after = time.monotonic() - killed
    assert orphaned_after < 3 * WORKER_TIMEOUT
    samples = fleet.exporter.metrics()
    assert read("fleetops_task_orphans_total", samples, outcome="redelivered") == 0
    assert read("fleetops_task_runs_repeated_total", samples) == 0
    assert read("fleetops_task_running_longest_seconds", samples) is None  # it runs nowhere
    # Another worker takes the victim's queue: Redis hands it the unacknowledged message once
    # the visibility timeout has passed since its delivery.
    steady = fleet.steady
    fleet.client.control.add_consumer("reminders", destination=[steady.hostname], reply=True)

    def redelivered() -> bool:
        samples = fleet.exporter.metrics()
        return read("fleetops_task_orphans_total", samples, outcome="redelivered") == 1

    wait_for(redelivered, timeout=60, message="the orphan reported redelivered")
    redelivered_after = time.monotonic() - killed
    samples = fleet.exporter.metrics()
    assert read("fleetops_task_runs_repeated_total", samples) == 1
    assert read("fleetops_tasks_orphaned", samples) == 0
    assert read("fleetops_task_orphans_total", samples, outcome="lost") == 0
    wait_for(lambda: succeeded(steady, task.id) == 1, timeout=60,
             message="the task completed on the other worker")  # fmt: skip
    fleet.client.control.cancel_consumer("reminders", destination=[steady.hostname], reply=True)
    print(f"orphaned {orphaned_after:.1f} s, redelivered {redelivered_after:.1f} s after the kill")


def test_a_countdown_past_the_visibility_timeout_is_reported_before_it_runs_twice(
    fleet: Fleet,
) -> None:
    read, steady = reader(fleet.exporter, "maintenance"), fleet.steady
    wait_for(
        lambda: value(fleet.exporter.metrics(), "fleetops_broker_visibility_timeout_seconds",
                      acks_late="true") == VISIBILITY_TIMEOUT,
        timeout=60, message="the workers' visibility timeout announced",
    )  # fmt: skip
    trapped_before = read("fleetops_task_eta_beyond_visibility_total") or 0
    repeated_before = read("fleetops_task_runs_repeated_total") or 0
    # Room for a slow receipt: the ETA must still lie beyond the timeout when it arrives.
    countdown = VISIBILITY_TIMEOUT + 6
    task = fleet.client.send_task(PROBE, kwargs={"duration": 0}, queue="maintenance",
                                  countdown=countdown)  # fmt: skip
    sent = time.monotonic()
    wait_for(lambda: read("fleetops_task_eta_beyond_visibility_total") == trapped_before + 1,
             timeout=30, message="the trap reported at receipt")  # fmt: skip
    # Before it ran at all, let alone twice.
    assert succeeded(steady, task.id) == 0
    trap_after = time.monotonic() - sent
    assert trap_after < countdown
    farthest = read("fleetops_task_eta_farthest_seconds")
    assert farthest is not None and VISIBILITY_TIMEOUT < farthest <= countdown
    # The trap springs: Redis handed the waiting message out again after the visibility
    # timeout, the same worker received it a second time and held both copies for the ETA.
    wait_for(lambda: succeeded(steady, task.id) == 2, timeout=60, message="the task run twice")
    assert steady.log().count(f"Task {PROBE}[{task.id}] received") == 2
    wait_for(lambda: read("fleetops_task_runs_repeated_total") == repeated_before + 1,
             timeout=30, message="the twice-run reported")  # fmt: skip
    assert read("fleetops_task_eta_beyond_visibility_total") == trapped_before + 1
    assert read("fleetops_task_eta_farthest_seconds") is None  # nothing waits any more
    print(f"trap {trap_after:.1f} s after sending, second run {time.monotonic() - sent:.1f} s")


def test_a_task_past_its_bound_is_stuck_while_it_runs_and_one_within_it_never_is(
    fleet: Fleet,
) -> None:
    read, steady, client = reader(fleet.exporter, "maintenance"), fleet.steady, fleet.client
    quick = client.send_task(PROBE, kwargs={"duration": STUCK_BOUND / 10}, queue="maintenance")
    seen_running = False
    while not succeeded(steady, quick.id):
        samples = fleet.exporter.metrics()
        assert read("fleetops_tasks_stuck", samples) in (0, None)
        seen_running |= read("fleetops_task_running_longest_seconds", samples) is not None
        time.sleep(0.05)
    assert seen_running, "the quick task was never seen running: the check saw nothing"
    assert read("fleetops_tasks_stuck") == 0
    slow = client.send_task(PROBE, kwargs={"duration": STUCK_BOUND + 2.5}, queue="maintenance")
    wait_for(lambda: read("fleetops_tasks_stuck") == 1, timeout=30,
             message="the slow task reported stuck")  # fmt: skip
    assert succeeded(steady, slow.id) == 0  # while it runs
    samples = fleet.exporter.metrics()
    assert value(samples, "fleetops_task_stuck_bound_seconds", name=PROBE) == STUCK_BOUND
    assert read("fleetops_task_running_longest_seconds", samples) > STUCK_BOUND  # type: ignore[operator]
    wait_for(lambda: succeeded(steady, slow.id) == 1, timeout=30, message="the slow task done")
    wait_for(lambda: read("fleetops_tasks_stuck") == 0, timeout=10, message="stuck no more")
