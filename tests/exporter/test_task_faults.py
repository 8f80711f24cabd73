"""Orphaned, stuck and twice-run tasks and the visibility-timeout trap, on a real fleet: real
Redis, real ``celery worker`` processes (acks_late, a visibility timeout of 6 s) and a real
exporter, as the on-call person would see them on /metrics.

One Redis, one exporter and one steady worker serve the whole module (each test compares the
counters before and after); the worker killed and its rescuer consume a queue of their own.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator

import pytest
from celery import Celery

from tests.exporter.process import ExporterProcess, Samples, run_exporter, value
from tests.helpers import wait_for
from tests.processes import Processes, processes_in
from tests.servers import CeleryProcess, RedisServer, run_worker
from workers.client import client_app

PROBE = "maintenance.probe"
VISIBILITY_TIMEOUT = 6  # seconds: Redis hands an unacknowledged task out again after this
WORKER_TIMEOUT = 6  # seconds without a heartbeat before the exporter takes a worker for down
STUCK_BOUND = 2.0  # seconds the probe may run before it is stuck


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Processes, dict]]:
    run_dir = tmp_path_factory.mktemp("task-faults")
    with processes_in(run_dir) as processes:
        redis = RedisServer(processes).start()
        (run_dir / "data").mkdir()
        env = {
            "FLEETOPS_BROKER_URL": redis.url,
            "FLEETOPS_DATA_DIR": str(run_dir / "data"),
            "FLEETOPS_DATABASE_URL": f"sqlite:///{run_dir / 'data' / 'fleetops.db'}",
            "FLEETOPS_RETRY_BACKOFF_SECONDS": "1",
            "FLEETOPS_RETRY_BACKOFF_MAX_SECONDS": "2",
            "FLEETOPS_BROKER_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
            "FLEETOPS_TELEMETRY_INTERVAL": "1",
        }
        yield processes, env


@pytest.fixture(scope="module")
def exporter(fleet: tuple[Processes, dict]) -> ExporterProcess:
    processes, env = fleet
    faults = {
        "FLEETOPS_EXPORTER_WORKER_TIMEOUT": str(WORKER_TIMEOUT),
        "FLEETOPS_EXPORTER_STUCK_BOUNDS": f'{{"{PROBE}": {STUCK_BOUND}}}',
    }
    return run_exporter(processes, env["FLEETOPS_BROKER_URL"], env=faults)


@pytest.fixture(scope="module")
def steady(fleet: tuple[Processes, dict]) -> CeleryProcess:
    """A worker on the maintenance queue that nobody kills."""
    processes, env = fleet
    return run_worker(processes, "steady@127.0.0.1", "maintenance", env, concurrency=2)


@pytest.fixture(scope="module")
def client(fleet: tuple[Processes, dict]) -> Iterator[Celery]:
    app = client_app(fleet[1]["FLEETOPS_BROKER_URL"], "task-faults-test")
    yield app
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
    fleet: tuple[Processes, dict], exporter: ExporterProcess, steady: CeleryProcess,
    client: Celery,
) -> None:  # fmt: skip
    processes, env = fleet
    read = reader(exporter, "reminders")
    victim = run_worker(processes, "victim@127.0.0.1", "reminders", env, concurrency=1)
    task = client.send_task(PROBE, kwargs={"duration": 4.0}, queue="reminders")
    wait_for(lambda: read("fleetops_task_running_longest_seconds") is not None,
             timeout=60, message="the exporter sees the task run on the victim")  # fmt: skip
    assert read("fleetops_tasks_orphaned") == 0
    victim.kill(signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: read("fleetops_tasks_orphaned") == 1, timeout=60,
             message="the task reported orphaned")  # fmt: skip
    # Heartbeats come every 2 s and housekeeping runs every second: the worker timeout, plus
    # a heartbeat and a round of housekeeping at most, plus room for a busy machine.
    assert time.monotonic() - killed < WORKER_TIMEOUT + 4
    samples = exporter.metrics()
    assert read("fleetops_task_orphans_total", samples, outcome="redelivered") == 0
    assert read("fleetops_task_runs_repeated_total", samples) == 0
    assert read("fleetops_task_running_longest_seconds", samples) is None  # it runs nowhere
    # Redis hands the unacknowledged message to the next worker after the visibility timeout.
    rescuer = run_worker(processes, "rescuer@127.0.0.1", "reminders", env, concurrency=1)

    def redelivered() -> bool:
        samples = exporter.metrics()
        return read("fleetops_task_orphans_total", samples, outcome="redelivered") == 1

    wait_for(redelivered, timeout=90, message="the orphan reported redelivered")
    samples = exporter.metrics()
    assert read("fleetops_task_runs_repeated_total", samples) == 1
    assert read("fleetops_tasks_orphaned", samples) == 0
    assert read("fleetops_task_orphans_total", samples, outcome="lost") == 0
    wait_for(lambda: succeeded(rescuer, task.id) == 1, timeout=60,
             message="the task completed on the rescuer")  # fmt: skip
    rescuer.stop()


def test_a_countdown_past_the_visibility_timeout_is_reported_before_it_runs_twice(
    exporter: ExporterProcess, steady: CeleryProcess, client: Celery
) -> None:
    read = reader(exporter, "maintenance")
    wait_for(
        lambda: value(exporter.metrics(), "fleetops_broker_visibility_timeout_seconds",
                      acks_late="true") == VISIBILITY_TIMEOUT,
        timeout=60, message="the workers' visibility timeout announced",
    )  # fmt: skip
    trapped_before = read("fleetops_task_eta_beyond_visibility_total") or 0
    repeated_before = read("fleetops_task_runs_repeated_total") or 0
    countdown = VISIBILITY_TIMEOUT + 4
    task = client.send_task(PROBE, kwargs={"duration": 0}, queue="maintenance",
                            countdown=countdown)  # fmt: skip
    sent = time.monotonic()
    wait_for(lambda: read("fleetops_task_eta_beyond_visibility_total") == trapped_before + 1,
             timeout=30, message="the trap reported at receipt")  # fmt: skip
    # Before it ran at all, let alone twice.
    assert succeeded(steady, task.id) == 0
    assert time.monotonic() - sent < countdown
    farthest = read("fleetops_task_eta_farthest_seconds")
    assert farthest is not None and countdown - 2 < farthest <= countdown
    # The trap springs: Redis handed the waiting message out again after the visibility
    # timeout, the same worker received it a second time and held both copies for the ETA.
    wait_for(lambda: succeeded(steady, task.id) == 2, timeout=60, message="the task run twice")
    assert steady.log().count(f"Task {PROBE}[{task.id}] received") == 2
    wait_for(lambda: read("fleetops_task_runs_repeated_total") == repeated_before + 1,
             timeout=30, message="the twice-run reported")  # fmt: skip
    assert read("fleetops_task_eta_beyond_visibility_total") == trapped_before + 1
    assert read("fleetops_task_eta_farthest_seconds") is None  # nothing waits any more


def test_a_task_past_its_bound_is_stuck_while_it_runs_and_one_within_it_never_is(
    exporter: ExporterProcess, steady: CeleryProcess, client: Celery
) -> None:
    read = reader(exporter, "maintenance")
    quick = client.send_task(PROBE, kwargs={"duration": STUCK_BOUND / 4}, queue="maintenance")
    seen_running = False
    while not succeeded(steady, quick.id):
        samples = exporter.metrics()
        assert read("fleetops_tasks_stuck", samples) in (0, None)
        seen_running |= read("fleetops_task_running_longest_seconds", samples) is not None
        time.sleep(0.05)
    assert seen_running, "the quick task was never seen running: the check saw nothing"
    assert read("fleetops_tasks_stuck") == 0
    slow = client.send_task(PROBE, kwargs={"duration": STUCK_BOUND + 2.5}, queue="maintenance")
    wait_for(lambda: read("fleetops_tasks_stuck") == 1, timeout=30,
             message="the slow task reported stuck")  # fmt: skip
    assert succeeded(steady, slow.id) == 0  # while it runs
    samples = exporter.metrics()
    assert value(samples, "fleetops_task_stuck_bound_seconds", name=PROBE) == STUCK_BOUND
    assert read("fleetops_task_running_longest_seconds", samples) > STUCK_BOUND  # type: ignore[operator]
    wait_for(lambda: succeeded(steady, slow.id) == 1, timeout=30, message="the slow task done")
    wait_for(lambda: read("fleetops_tasks_stuck") == 0, timeout=10, message="stuck no more")
