"""A light Celery client of the fleet's broker: sends tasks and browses queues the way the
workers declare them, without loading worker settings (for the console, tools and tests)."""

from __future__ import annotations

import time

from celery import Celery
from celery.signals import before_task_publish

from workers.queues import MAINTENANCE, MAX_PRIORITY, PRIORITY_STEPS, task_queues, task_routes


def queue_conf(broker_url: str) -> dict:
    """The queue part of the configuration, shared by the workers' app and every client:
    RabbitMQ refuses a queue declared with other arguments than the first declaration."""
    return {
        "task_queues": task_queues(),
        "task_default_queue": MAINTENANCE,
        "task_routes": task_routes(broker_url),
        "task_queue_max_priority": MAX_PRIORITY,
    }


def transport_options(visibility_timeout: int) -> dict:
    return {
        "priority_steps": PRIORITY_STEPS,
        "queue_order_strategy": "priority",
        "visibility_timeout": visibility_timeout,
        # kombu 5.7 sweeps for abandoned (unacked past the visibility timeout) messages only
        # every interval x throttle seconds, 100 s by default: a task of a SIGKILLed worker
        # would wait that long on top of the timeout. One cheap ZRANGE per sweep, guarded by
        # a mutex across the fleet, so sweep on every tick, more often for short timeouts.
        "unacked_restore_interval": min(10, max(1, visibility_timeout // 10)),
        "unacked_restore_throttle": 1,
    }


@before_task_publish.connect(weak=False, dispatch_uid="fleetops-publish-timestamp")
def stamp_publish_time(properties: dict | None = None, **_: object) -> None:
    """Every task message carries the AMQP ``timestamp`` property (whole seconds, as AMQP has
    it): Celery sets none, and without it RabbitMQ cannot tell a queue's oldest message's age
    (``head_message_timestamp``). One given by the sender (``apply_async(timestamp=...)``)
    stays. Connected once for the process, so the workers' app (which imports this module),
    Beat and every client app stamp what they send; on Redis it is one more harmless field."""
    if properties is not None:
        properties.setdefault("timestamp", int(time.time()))


def client_app(broker_url: str, name: str = "fleetops-client") -> Celery:
    app = Celery(name, broker=broker_url)
    app.conf.update(
        **queue_conf(broker_url),
        broker_transport_options=transport_options(3600),
        # Without task-sent events the exporter cannot tell a task's queue or its end-to-end
        # latency, and the per-queue latency and error-budget alerts would miss it.
        task_send_sent_event=True,
        task_serializer="json",
        accept_content=["json"],
    )
    return app
