"""Acknowledging a broker's deliveries from threads that do not own the channel.

On a queue consumed with manual acknowledgements (the recorder's durable queue on RabbitMQ)
a message may be acknowledged only once what it carried is safe, which the reader thread
cannot know: that is decided downstream, by the sink's writer. But a kombu channel is not
thread-safe, so only the reader thread may send ``basic.ack``. The hand-back is one value,
"everything up to this delivery may be acknowledged": any thread raises it, the reader applies
it between two reads with ``basic_ack(tag, multiple=True)``.

A delivery tag means something only on the channel that delivered it; acknowledging a tag of
a closed channel on its successor would acknowledge other messages, or make RabbitMQ close
the channel. Each connection of the reader therefore has a generation, and a delivery of an
older generation is never applied (RabbitMQ redelivers those messages anyway).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Delivery:
    """The last message of a batch: acknowledging it acknowledges every one before it."""

    generation: int  # which connection of the reader delivered it
    tag: int  # its delivery tag on that connection's channel


class AckLine:
    """The highest delivery that may be acknowledged; raised by any thread, read by the
    reader's. It never goes down: deliveries are released in order, and an older one released
    late (a stale generation) must not hide a newer one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: Delivery | None = None

    def release(self, delivery: Delivery) -> None:
        with self._lock:
            if self._latest is None or delivery > self._latest:
                self._latest = delivery

    @property
    def latest(self) -> Delivery | None:
        return self._latest
