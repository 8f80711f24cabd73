"""The console tests share one real fleet and one known workload (see fleet.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import func, select

from exporters.history.database import create_history_engine
from exporters.history.schema import tasks
from tests.console.fleet import Fleet, running_fleet
from tests.helpers import wait_for
from workers import deadletter

SUCCEEDED = 5
FAILED = 3
WAITING_IMAGES = 4
ALERT = "CeleryQueueDepthWarning"


@dataclass(frozen=True)
class Workload:
    succeeded: int
    failed: int
    waiting_images: int
    alert: str


# Package scope, not session: the fleet stops once the console tests are done, instead of
# running Beat, Prometheus' rules and the recorder beside every later test of the suite.
@pytest.fixture(scope="package")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(tmp_path_factory.mktemp("console-fleet")) as running:
        yield running


def _states(url: str) -> dict[str, int]:
    engine = create_history_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(tasks.c.state, func.count())
                .where(tasks.c.name == "maintenance.probe")
                .group_by(tasks.c.state)
            ).all()
    finally:
        engine.dispose()
    return {state: count for state, count in rows}


@pytest.fixture(scope="package")
def workload(fleet: Fleet) -> Workload:
    """Known work: successes and failures on maintenance, messages left waiting on images
    (no worker consumes it), and one alert posted to Alertmanager."""
    client = fleet.client()
    for _ in range(SUCCEEDED):
        client.send_task("maintenance.probe", kwargs={"duration": 0.0})
    for _ in range(FAILED):
        client.send_task("maintenance.probe", kwargs={"fail": "ValueError"})
    for index in range(WAITING_IMAGES):
        client.send_task("images.process", args=[f"waiting-{index}"], queue="images")
    wait_for(
        lambda: _states(fleet.history_url) == {"SUCCESS": SUCCEEDED, "FAILURE": FAILED},
        timeout=90,
        message="the history recorded every probe",
    )
    wait_for(lambda: len(deadletter.entries(client)) == FAILED, timeout=60, message="dead letters")
    wait_for(
        lambda: (
            fleet.prometheus_value('celery_queue_length{queue_name="images"}') == WAITING_IMAGES
        ),
        timeout=60,
        message="Prometheus scraped the images queue depth",
    )
    wait_for(
        lambda: (
            fleet.prometheus_value("fleetops_worker_memory_percent") is not None
            and fleet.prometheus_value("fleetops_beat_last_run_timestamp_seconds") is not None
        ),
        timeout=60,
        message="Prometheus scraped worker telemetry and Beat",
    )
    # Prometheus would need the rule's `for` (15 min) to send this one: post it as it would.
    alert = {
        "labels": {"alertname": ALERT, "severity": "warning", "queue_name": "images"},
        "annotations": {"summary": "A queue is deeper than its warning level."},
    }
    httpx.post(f"{fleet.alertmanager_url}/api/v2/alerts", json=[alert]).raise_for_status()
    wait_for(
        lambda: httpx.get(f"{fleet.alertmanager_url}/api/v2/alerts").json(),
        timeout=30,
        message="Alertmanager holds the alert",
    )
    client.close()
    return Workload(SUCCEEDED, FAILED, WAITING_IMAGES, ALERT)


@pytest.fixture
def console_env(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    """Point this process's console settings at the fleet (AppTest runs pages in-process)."""
    for key in [k for k in os.environ if k.startswith("FLEETOPS_")]:
        monkeypatch.delenv(key)
    for key, value in fleet.console_env.items():
        monkeypatch.setenv(key, value)
    return fleet
