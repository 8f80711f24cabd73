"""What every event reader is given: the broker URL, the queue its batches go to, the status it
keeps for health and metrics, and the backoff between reconnects. The Redis and the kombu
readers add their own options after these, so both are built the same way by the consumer."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from exporters.stream.acks import Delivery
from exporters.stream.backoff import Backoff
from exporters.stream.batches import BatchQueue
from exporters.stream.status import StreamStatus


# eq and repr off: a reader is a running thing compared by identity, and its URL may hold a
# password that a repr would print.
@dataclass(eq=False, repr=False)
class EventReader:
    url: str
    queue: BatchQueue
    status: StreamStatus
    # None (what callers pass when they were given none) means the default backoff.
    backoff: Backoff | None = None

    def __post_init__(self) -> None:
        if self.backoff is None:
            self.backoff = Backoff()

    def run(self, stop: threading.Event) -> None:
        """Read until ``stop`` is set, reconnecting with backoff whenever the link breaks."""
        raise NotImplementedError

    def acknowledge(self, delivery: Delivery) -> None:
        """Everything up to ``delivery`` is safe; any thread may call it. Nothing to do for a
        stream without acknowledgements (Redis pub/sub, auto-ack queues)."""
