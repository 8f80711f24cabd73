"""The one way in: broker -> reader -> BatchQueue -> consumer (decode, check) -> sink.

Both the metrics exporter and the history recorder are an :class:`EventSink` fed by an
:class:`EventStream`; they never see a broker message, only events that
:class:`~exporters.stream.events.Checker` has checked. The consumer thread cannot die of an
event: decoding and checking reject by reason, and anything unexpected in the sink is caught
for that batch, counted (``internal_error``) and logged with rate limiting.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from exporters.stream.acks import Delivery
from exporters.stream.backoff import Backoff
from exporters.stream.batches import RAW, BatchQueue
from exporters.stream.collector import ScheduledCollector
from exporters.stream.envelope import DecodeError, decode, decode_delivered
from exporters.stream.events import DEFAULT_LIMITS, Checker, EventLimits, Rejected
from exporters.stream.health import STALL_AFTER, Beat, Part
from exporters.stream.kombu_reader import KombuEventReader
from exporters.stream.reader import EventReader
from exporters.stream.redis_reader import RedisEventReader
from exporters.stream.rejects import Rejections
from exporters.stream.status import StreamStatus

log = logging.getLogger(__name__)

REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+socket")
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
TICK = 0.25


class EventSink(Protocol):
    def apply(self, events: list[dict], received_at: float) -> None:
        """Checked events, received at monotonic time ``received_at``; on the consumer thread."""

    def tick(self, now: float) -> None:
        """Called on the consumer thread at least every quarter second (housekeeping)."""

    def reconnected(self, now: float) -> None:
        """The stream reconnected: events sent meanwhile were missed (Redis pub/sub)."""

    def delivered(self, delivery: Delivery) -> None:
        """The batch just applied ends with ``delivery`` (a queue with manual acks): call
        :meth:`EventStream.acknowledge` with it, from any thread, once everything applied so
        far is safe. Also called for a batch whose events were all rejected, or that failed:
        what was counted as lost is acknowledged, never redelivered forever."""


def is_redis_url(url: str) -> bool:
    return url.split("://", 1)[0] in REDIS_SCHEMES


def is_amqp_url(url: str) -> bool:
    """A broker whose queues outlive their consumer (RabbitMQ): durable queues make sense."""
    return url.split("://", 1)[0] in AMQP_SCHEMES


class EventStream:
    def __init__(
        self,
        url: str,
        sink: EventSink,
        *,
        reader: str = "auto",
        buffer_bytes: int = 64 * 1024 * 1024,
        limits: EventLimits = DEFAULT_LIMITS,
        durable_queue: str | None = None,
        queue_max_length: int = 1_000_000,
        prefetch: int = 50_000,
        consumer_name: str = "consumer",
        logger: logging.Logger = log,
        backoff: Backoff | None = None,
        stall_after: float = STALL_AFTER,
    ) -> None:
        self.stall_after = stall_after
        self.sink = sink
        self.batches = BatchQueue(max_bytes=buffer_bytes)
        self.status = StreamStatus()
        self.checker = Checker(limits)
        self.rejections = Rejections(logger)
        kind = ("redis" if is_redis_url(url) else "kombu") if reader == "auto" else reader
        self.reader: EventReader
        if kind == "redis":
            self.reader = RedisEventReader(url, self.batches, self.status, backoff)
        else:
            self.reader = KombuEventReader(
                url, self.batches, self.status, backoff,
                durable_queue=durable_queue, queue_max_length=queue_max_length,
                prefetch=prefetch,
            )  # fmt: skip
        self.consumer_name = consumer_name
        # Written by the consumer thread only.
        self.messages = 0  # broker messages consumed
        self.bodies = 0  # event bodies in them (a task.multi message carries several)
        self.accepted = 0  # events that passed the checks and went to the sink
        self.consumer_beat = Beat()
        self.consumer_progress = Beat()
        # Inactive until the process's entry point takes the collector over (collector.py).
        self.collector = ScheduledCollector()
        self._threads: dict[str, threading.Thread] = {}

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self, stop: threading.Event) -> None:
        for name, target in (("reader", self.reader.run), (self.consumer_name, self._consume)):
            thread = threading.Thread(target=target, args=(stop,), name=name, daemon=True)
            thread.start()
            self._threads[name] = thread

    def join(self, timeout: float = 10.0) -> None:
        """Waits at most ``timeout`` in all, not for each thread in turn."""
        deadline = time.monotonic() + timeout
        for thread in self._threads.values():
            thread.join(max(0.0, deadline - time.monotonic()))

    def parts(self) -> list[Part]:
        """The reader and the consumer, for health (exporters/stream/health.py)."""
        return [
            Part(
                "reader",
                lambda: self.status.last_beat,
                self._threads.get("reader"),
                stall_after=self.stall_after,
            ),
            Part(
                self.consumer_name,
                self.consumer_beat,
                self._threads.get(self.consumer_name),
                backlog=lambda: len(self.batches),
                progress=self.consumer_progress,
                stall_after=self.stall_after,
            ),
        ]

    # ---- the consumer thread -----------------------------------------------------------------

    def _consume(self, stop: threading.Event) -> None:
        connects_seen = 0
        sink = self.sink
        beat = self.consumer_beat
        while not stop.is_set():
            beat.now()
            batch = None
            try:
                batch = self.batches.get(timeout=TICK)
                connects = self.status.connects
                if connects != connects_seen:
                    if connects_seen:
                        sink.reconnected(time.monotonic())
                    connects_seen = connects
                if batch is not None:
                    try:
                        self.consume(batch.kind, batch.items, batch.received_at)
                    finally:
                        if batch.delivery is not None:
                            sink.delivered(batch.delivery)
                now = time.monotonic()
                sink.tick(now)
                self.collector.tick(now)
            except Exception as exc:
                # A bug met by one batch must not stop the stream: count it, say it, go on.
                lost = len(batch.items) if batch is not None else 0
                self.rejections.reject("internal_error", f"{type(exc).__name__}: {exc}", lost)
                log.debug("consumer error", exc_info=True)

    def acknowledge(self, delivery: Delivery) -> None:
        """Everything up to ``delivery`` is safe (the sink says so, from any thread)."""
        self.reader.acknowledge(delivery)

    def consume(self, kind: str, items: list, received_at: float) -> None:
        """One batch, as the consumer thread handles it: decode, check, hand to the sink."""
        events = self.checked(kind, items)
        self.messages += len(items)
        self.accepted += len(events)
        if events:
            self.sink.apply(events, received_at)
        self.consumer_progress.now()

    def checked(self, kind: str, items: list) -> list[dict]:
        """Decode and check one batch; rejections counted by reason."""
        reject = self.rejections.reject
        bodies: list = []
        extend = bodies.extend
        raw = kind == RAW
        for item in items:
            try:
                extend(decode(item) if raw else decode_delivered(*item))
            except DecodeError as exc:
                reject(exc.reason, exc.detail)
            except Exception as exc:  # a bug met by one message must not cost the batch
                reject("internal_error", f"decoding: {type(exc).__name__}: {exc}")
        self.bodies += len(bodies)
        return self.check_bodies(bodies)

    def check_bodies(self, bodies: list) -> list[dict]:
        """The checked form of every usable body; the rest rejected and counted by reason.
        Also what the recorder runs on events read back from its disk spool."""
        reject = self.rejections.reject
        now = time.time()
        check = self.checker.check
        events = []
        append = events.append
        for body in bodies:
            try:
                append(check(body, now))
            except Rejected as exc:
                reject(exc.reason, exc.detail)
            except Exception as exc:
                reject("internal_error", f"checking: {type(exc).__name__}: {exc}")
        corrections = self.checker.corrections
        if corrections:
            self.rejections.correct(corrections)
        return events

    def overflow_events(self) -> int:
        """Events in the messages the hand-over had to drop. The reader drops whole messages
        without decoding them (that is the point of dropping), and a prefork worker's
        task.multi message carries several events: estimate with the mean events per message
        consumed so far (within 0.5% of the exact loss in bench/exporter_throughput.py)."""
        dropped = self.batches.dropped_messages
        if not dropped:
            return 0
        per_message = self.bodies / self.messages if self.messages else 1
        return round(dropped * max(1.0, per_message))
