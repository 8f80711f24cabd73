"""Where events come from. The recorder needs only :class:`EventSource`: something that calls
``emit(event_dict)`` for each decoded Celery event until ``stop`` is set. The default reads
with Celery's own event receiver; a faster reader can be plugged in later without touching
the buffer or the writer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from celery import Celery
from kombu import Queue

from exporters.history.metrics import RecorderMetrics

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]

AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")


class EventSource(Protocol):
    def run(self, emit: Emit, stop: threading.Event) -> None: ...


class CeleryEventSource:
    """Celery's ``EventReceiver`` with reconnects and, on RabbitMQ, a durable named queue.

    With Redis, events travel over pub/sub and exist only while someone listens: what is sent
    while the recorder is down is not recorded. With RabbitMQ the recorder's queue is durable,
    not auto-deleted and bounded (``x-max-length``), so events wait for it across restarts.
    """

    def __init__(
        self,
        broker_url: str,
        *,
        queue_name: str = "fleetops.history",
        queue_max_length: int = 1_000_000,
        metrics: RecorderMetrics | None = None,
        retry_initial: float = 0.5,
        retry_max: float = 15.0,
    ) -> None:
        self.broker_url = broker_url
        self.queue_name = queue_name
        self.queue_max_length = queue_max_length
        self.metrics = metrics
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.app = Celery("fleetops-history", broker=broker_url, set_as_current=False)
        self.app.conf.update(accept_content=["json"], broker_connection_retry_on_startup=True)
        self.connected = threading.Event()

    @property
    def durable(self) -> bool:
        return self.broker_url.split("://", 1)[0] in AMQP_SCHEMES

    def run(self, emit: Emit, stop: threading.Event) -> None:
        delay = self.retry_initial
        first = True
        while not stop.is_set():
            try:
                self._consume(emit, stop)
                return
            except Exception as exc:  # any broker failure: reconnect with backoff, never exit
                self.connected.clear()
                if self.metrics:
                    self.metrics.broker_up.set(0)
                    if not first:
                        self.metrics.broker_reconnects.inc()
                log.warning(
                    "event source: broker %s unavailable (%s: %s); retrying in %.1fs",
                    self._safe_url(), type(exc).__name__, exc, delay,
                )  # fmt: skip
                first = False
                if stop.wait(delay):
                    return
                delay = min(delay * 2, self.retry_max)

    def _consume(self, emit: Emit, stop: threading.Event) -> None:
        with self.app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1)
            receiver = self.app.events.Receiver(
                connection, handlers={"*": emit}, queue_prefix="fleetops.history"
            )
            if self.durable:
                receiver.queue = Queue(
                    self.queue_name,
                    exchange=receiver.exchange,
                    routing_key="#",
                    durable=True,
                    auto_delete=False,
                    # drop-head: when the recorder stays away too long, the oldest go first.
                    queue_arguments={"x-max-length": self.queue_max_length},
                )
            done = threading.Event()
            watcher = threading.Thread(
                target=self._stop_when_set, args=(receiver, stop, done), daemon=True
            )
            watcher.start()
            self.connected.set()
            if self.metrics:
                self.metrics.broker_up.set(1)
            log.info("event source: consuming events from %s", self._safe_url())
            try:
                receiver.capture(limit=None, timeout=None, wakeup=False)
            finally:
                done.set()

    @staticmethod
    def _stop_when_set(receiver: Any, stop: threading.Event, done: threading.Event) -> None:
        # The receiver checks should_stop between reads (at least once a second).
        while not done.is_set():
            if stop.wait(0.2):
                receiver.should_stop = True
                return

    def _safe_url(self) -> str:
        return self.app.connection_for_read().as_uri()
