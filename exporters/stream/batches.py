"""The bounded hand-over between the thread that reads the broker and the one that applies.

The reader must never stop draining its socket: a Redis pub/sub client whose output buffer
passes the server's limit is disconnected and loses everything in that buffer. So the reader
puts whole batches here without blocking; when the queue is full the batch is dropped and
counted (``dropped``), which is the only loss the exporter chooses itself.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from exporters.stream.acks import Delivery

RAW = "raw"  # kombu envelopes as read from Redis pub/sub, decoded by the consumer
BODIES = "bodies"  # (content type, body) pairs as a kombu transport delivered them


@dataclass(slots=True)
class Batch:
    kind: str
    items: list
    size: int  # bytes for raw batches, events for decoded ones
    received_at: float = 0.0
    # On a queue with manual acknowledgements: its last message, to acknowledge (with every
    # message before it) once the sink has made the batch safe. None: nothing to acknowledge.
    delivery: Delivery | None = None


@dataclass
class BatchQueue:
    max_bytes: int = 64 * 1024 * 1024
    _items: deque = field(default_factory=deque)
    _bytes: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition)
    dropped_batches: int = 0
    dropped_messages: int = 0

    def put(self, batch: Batch) -> bool:
        """Queue the batch, or drop and count it when the queue is full; never blocks."""
        with self._cond:
            if self._items and self._bytes + batch.size > self.max_bytes:
                self.dropped_batches += 1
                self.dropped_messages += len(batch.items)
                return False
            self._items.append(batch)
            self._bytes += batch.size
            self._cond.notify()
            return True

    def get(self, timeout: float) -> Batch | None:
        with self._cond:
            if not self._items and not self._cond.wait_for(lambda: self._items, timeout):
                return None
            batch = self._items.popleft()
            self._bytes -= batch.size
            return batch

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)
