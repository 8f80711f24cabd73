"""Read Celery events through kombu: works for every transport (RabbitMQ, SQS, sentinel...).

Slower than the direct Redis reader (kombu decodes each message in this thread) but it is
Celery's own receiver, so whatever transport Celery can publish events on, this can read.
"""

from __future__ import annotations

import logging
import threading
import time

from celery import Celery

from exporters.stream.backoff import Backoff
from exporters.stream.batches import DECODED, Batch, BatchQueue
from exporters.stream.status import StreamStatus

log = logging.getLogger(__name__)

FLUSH_EVERY = 0.05
FLUSH_AT = 500


class KombuEventReader:
    def __init__(
        self,
        url: str,
        queue: BatchQueue,
        status: StreamStatus,
        backoff: Backoff | None = None,
    ) -> None:
        self.app = Celery("fleetops-exporter", broker=url, set_as_current=False)
        self.app.conf.broker_connection_retry_on_startup = False
        self.queue = queue
        self.status = status
        self.backoff = backoff or Backoff()
        self._pending: list[dict] = []
        self._last_flush = time.monotonic()

    def _on_event(self, event: dict) -> None:
        self._pending.append(event)
        self.status.messages += 1
        if len(self._pending) >= FLUSH_AT or time.monotonic() - self._last_flush > FLUSH_EVERY:
            self._flush()

    def _flush(self) -> None:
        self._last_flush = time.monotonic()
        if self._pending:
            pending, self._pending = self._pending, []
            self.queue.put(Batch(DECODED, pending, len(pending), self._last_flush))

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                with self.app.connection_for_read() as conn:
                    conn.ensure_connection(max_retries=1)
                    receiver = self.app.events.Receiver(conn, handlers={"*": self._on_event})
                    self.status.on_connected()
                    self.backoff.reset()
                    log.info("reading events through kombu from %s", conn.as_uri())

                    def on_iteration(receiver=receiver) -> None:
                        # Called after every drain and every idle second: flush, honour stop.
                        self._flush()
                        receiver.should_stop = stop.is_set()

                    receiver.on_iteration = on_iteration
                    receiver.capture(limit=None, timeout=None, wakeup=False)
                    self._flush()
            except Exception as exc:  # kombu raises transport-specific errors
                self._flush()
                self.status.on_disconnected(f"lost the event stream: {exc}")
                log.warning("event stream through kombu failed: %s; retrying with backoff", exc)
                stop.wait(self.backoff.next_delay())
