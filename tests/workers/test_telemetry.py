"""Workers report their memory and reliability settings as Celery events that any event
consumer can read."""

from __future__ import annotations

import threading

import psutil
from celery import Celery

from tests.helpers import wait_for
from workers.telemetry import MAX_TIME_LIMITS, reliability

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
    # The settings that decide what happens to a task when a worker dies (fleet env: 6 s).
    assert event["visibility_timeout"] == 6
    assert event["acks_late"] is True
    limits = event["time_limits"]
    assert limits["maintenance.probe"] == 300 and limits["images.process"] == 300
    assert not [name for name in limits if name.startswith("celery.")]
    beat = next(e for e in found if e["type"] == "beat-sent")
    assert beat["name"] == "due-soon-reminders"
    assert beat["task"] == "reminders.send_due_soon"
    assert beat["interval_seconds"] == 2.0


def test_reliability_is_announced_as_each_transport_and_task_has_it() -> None:
    # Settings only: nothing here connects to a broker.
    rabbit = Celery(broker="amqp://guest@127.0.0.1:1//", set_as_current=False)
    rabbit.conf.task_acks_late = False

    @rabbit.task(name="app.limited", time_limit=12)
    def limited() -> None: ...

    @rabbit.task(name="app.free")
    def free() -> None: ...

    announced = reliability(rabbit)
    assert "visibility_timeout" not in announced  # RabbitMQ has none
    assert announced["acks_late"] is False
    assert announced["time_limits"] == {"app.limited": 12.0}  # no app-wide limit
    redis = Celery(broker="redis://127.0.0.1:1/0;redis://127.0.0.1:2/0", set_as_current=False)
    redis.conf.task_time_limit = 300

    def noop() -> None: ...

    for i in range(MAX_TIME_LIMITS + 5):
        redis.task(name=f"app.t{i:04}")(noop)
    announced = reliability(redis)
    assert announced["visibility_timeout"] == 3600  # kombu's default for Redis
    assert len(announced["time_limits"]) == MAX_TIME_LIMITS
    redis.conf.broker_transport_options = {"visibility_timeout": 45}
    assert reliability(redis)["visibility_timeout"] == 45
