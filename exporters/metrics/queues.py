"""What the broker says about its queues, as one immutable snapshot per poll."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class QueueSnapshot:
    ok: bool = False
    error: str = ""
    taken_at: float = field(default_factory=time.monotonic)
    # queue -> priority step -> waiting messages (Redis sub-queues; other brokers: step 0)
    lengths: dict[str, dict[int, int]] = field(default_factory=dict)
    unacked: dict[str, int] = field(default_factory=dict)
    oldest_age: dict[str, float] = field(default_factory=dict)
    # Consumers per queue; None where the broker cannot tell and no worker told us.
    consumers: dict[str, int] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)
    # RabbitMQ only (None elsewhere): 1 when the management API gave the numbers, 0 when only
    # AMQP did; its failed or hostile answers by reason, since the poller started.
    management_up: int | None = None
    management_errors: dict[str, int] = field(default_factory=dict)

    def length(self, queue: str) -> int:
        return sum(self.lengths.get(queue, {}).values())


class FirstSeen:
    """When a message was first seen at the head of its queue: the age of a message whose
    task-sent event we never saw (sent before the exporter started) is at least this old."""

    def __init__(self, limit: int = 10_000) -> None:
        self._seen: dict[str, float] = {}
        self.limit = limit

    def since(self, message_id: str, now: float) -> float:
        first = self._seen.get(message_id)
        if first is None:
            if len(self._seen) >= self.limit:
                self._seen.clear()
            first = self._seen[message_id] = now
        return first

    def keep_only(self, ids: set[str]) -> None:
        for gone in set(self._seen) - ids:
            del self._seen[gone]


def queues_to_poll(seen: set[str], configured: list[str], cap: int) -> set[str]:
    """Configured queues first, then those events named, never more than ``cap`` in all:
    a stream naming random queues must not make every poll longer."""
    chosen = sorted(set(configured))[:cap]
    rest = sorted(seen - set(chosen))
    return set(chosen) | set(rest[: max(0, cap - len(chosen))])
