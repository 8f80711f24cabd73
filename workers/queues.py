"""Queues of the fleet and their priorities (ADR-001: images high, reminders, maintenance low)."""

from __future__ import annotations

from kombu import Exchange, Queue

IMAGES = "images"
REMINDERS = "reminders"
MAINTENANCE = "maintenance"
DEAD_LETTER = "dead_letter"

MAX_PRIORITY = 9
# Redis serves priorities through sub-queues, one per step; RabbitMQ through x-max-priority.
PRIORITY_STEPS = [0, 3, 6, 9]

# How urgent each queue's messages are by default, 0 (least) to 9 (most).
URGENCY = {IMAGES: 9, REMINDERS: 6, MAINTENANCE: 3}


def message_priority(urgency: int, broker_url: str) -> int:
    """The message priority that means ``urgency`` on this broker.

    RabbitMQ serves the highest priority first; kombu's Redis transport serves its priority
    sub-queues in ascending order, so there 0 is the most urgent.
    """
    urgency = max(0, min(MAX_PRIORITY, urgency))
    if broker_url.startswith(("redis", "rediss", "sentinel")):
        return MAX_PRIORITY - urgency
    return urgency


def task_queues() -> list[Queue]:
    exchange = Exchange("fleetops", type="direct")
    return [
        Queue(name, exchange, routing_key=name, queue_arguments={"x-max-priority": MAX_PRIORITY})
        for name in (IMAGES, REMINDERS, MAINTENANCE)
    ]


def task_routes(broker_url: str) -> dict[str, dict]:
    return {
        f"{queue}.*": {"queue": queue, "priority": message_priority(urgency, broker_url)}
        for queue, urgency in URGENCY.items()
    }
