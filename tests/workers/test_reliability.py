"""A worker killed mid-task, retries with backoff, configuration errors that name the key."""

from __future__ import annotations

import signal
import subprocess
import sys

from tests.helpers import wait_for
from tests.servers import REPO
from tests.workers.conftest import FleetClient


def test_task_of_a_sigkilled_worker_is_delivered_again_and_completes(
    fleet_env, fleet_client: FleetClient, start_worker
):
    victim = start_worker(queues="maintenance", name="victim", concurrency=1)
    result = fleet_client.app.send_task(
        "maintenance.probe", kwargs={"duration": 4.0}, queue="maintenance"
    )
    wait_for(
        lambda: "maintenance.probe" in victim.log() and "received" in victim.log(),
        timeout=30, message="task started on the first worker",
    )  # fmt: skip
    victim.kill(signal.SIGKILL)
    rescuer = start_worker(queues="maintenance", name="rescuer", concurrency=1)
    # acks_late: the message was never acknowledged, so Redis hands it back after the
    # visibility timeout (6 s in tests) and the second worker runs it to completion.
    wait_for(
        lambda: "succeeded" in rescuer.log() and result.id in rescuer.log(),
        timeout=90, message="task completed on the second worker",
    )  # fmt: skip
    assert "succeeded" not in victim.log()


def test_transient_errors_retry_with_backoff_then_dead_letter(
    fleet_client: FleetClient, start_worker
):
    worker = start_worker(queues="maintenance", concurrency=1)
    sent = fleet_client.app.send_task(
        "maintenance.probe", kwargs={"fail": "TransientError"}, queue="maintenance"
    )
    letters = wait_for(fleet_client.dead_letters, timeout=60, message="dead letter after retries")
    assert letters[0].task_id == sent.id
    assert letters[0].retries == 3
    assert worker.log().count("Retry in") == 3


def test_bad_configuration_names_the_variable(fleet_env):
    env = {**fleet_env, "FLEETOPS_TASK_SOFT_TIME_LIMIT": "400", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "fleetops", "dlq", "list"], env=env, cwd=REPO,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "FLEETOPS_TASK_SOFT_TIME_LIMIT (400) must be below FLEETOPS_TASK_TIME_LIMIT" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr
    env = {**fleet_env, "FLEETOPS_WORKER_CONCURRENCY": "lots"}
    done = subprocess.run(
        [sys.executable, "-m", "fleetops", "dlq", "list"], env=env, cwd=REPO,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "FLEETOPS_WORKER_CONCURRENCY" in done.stderr and "'lots'" in done.stderr
