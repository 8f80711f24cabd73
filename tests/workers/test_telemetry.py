"""Workers report their memory as Celery events that any event consumer can read."""

from __future__ import annotations

import threading

import psutil
from celery import Celery

from tests.helpers import wait_for

receivers: list = []


def _collect(app: Celery, kinds: set[str], found: list[dict], ready: threading.Event) -> None:
    with app.connection_for_read() as conn:
        receiver = app.events.Receiver(
            conn, handlers={"*": lambda event: event["type"] in kinds and found.append(event)}
        )
        receivers.append(receiver)
        ready.set()
        receiver.capture(limit=None, timeout=None, wakeup=False)


def test_worker_sends_memory_telemetry_events(fleet_env, start_worker, start_beat):
    app = Celery(broker=fleet_env["FLEETOPS_BROKER_URL"])
    found: list[dict] = []
    ready = threading.Event()
    thread = threading.Thread(
        target=_collect, args=(app, {"worker-telemetry", "beat-sent"}, found, ready),
        daemon=True,
    )  # fmt: skip
    thread.start()
    ready.wait(10)
    worker = start_worker(queues="images", name="telemetry", concurrency=2)
    start_beat()
    wait_for(
        lambda: [e for e in found if e["type"] == "worker-telemetry"]
        and [e for e in found if e["type"] == "beat-sent"],
        timeout=60, message="telemetry and beat events",
    )  # fmt: skip
    receivers[0].should_stop = True
    event = next(e for e in found if e["type"] == "worker-telemetry")
    assert event["hostname"] == worker.hostname
    assert event["pool_size"] == 2
    assert event["memory_limit_bytes"] > 0
    main = psutil.Process(worker.process.pid)
    floor = main.memory_info().rss  # at least the main process is counted
    assert event["rss_bytes"] >= floor * 0.5
    assert (
        abs(event["memory_percent"] - 100 * event["rss_bytes"] / event["memory_limit_bytes"]) < 0.01
    )
    beat = next(e for e in found if e["type"] == "beat-sent")
    assert beat["name"] == "due-soon-reminders"
    assert beat["task"] == "reminders.send_due_soon"
    assert beat["interval_seconds"] == 2.0
