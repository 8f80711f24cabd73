"""Read Celery events through kombu: every transport Celery can publish events on (RabbitMQ,
Redis Sentinel, SQS...), for the brokers the direct Redis reader does not speak.

Like the Redis reader it only moves messages: it takes each message's body as the transport
delivered it and hands it on in batches; decoding and checking happen in the consumer thread,
in the same code as for Redis (envelope.decode_body, events.Checker). Celery's own
``EventReceiver`` is not used on purpose: it parses and adjusts every event in this thread with
its own rules, and a malformed one raises inside its drain loop.

The queue is bound to the ``celeryev`` topic exchange with ``#``. By default it is private and
goes away with the connection, as Celery's receiver makes it; with ``durable_queue`` it is a
named, durable queue with a length bound (``x-max-length``, the oldest dropped first), so on
RabbitMQ events wait for a consumer that restarts. That queue is consumed with manual
acknowledgements and a bounded prefetch: each batch carries its last delivery, the sink hands
it back through :meth:`KombuEventReader.acknowledge` once the batch is safe, and this thread
sends the ``basic_ack`` (exporters/stream/acks.py says why here, and why per connection).
The private queue stays auto-acknowledged: nothing waits in it for a restart anyway.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import KW_ONLY, dataclass

from kombu import Connection, Consumer, Exchange, Queue

from exporters.stream.acks import AckLine, Delivery
from exporters.stream.batches import BODIES, Batch
from exporters.stream.reader import EventReader

log = logging.getLogger(__name__)

EXCHANGE = "celeryev"
FLUSH_EVERY = 0.05
FLUSH_AT = 500
# Celery's own defaults for an event receiver's private queue (event_queue_ttl/_expires).
PRIVATE_QUEUE_TTL = 5.0
PRIVATE_QUEUE_EXPIRES = 60.0
# Unacknowledged messages RabbitMQ may hand the durable queue's consumer (AMQP's short int).
MAX_PREFETCH = 65_535


@dataclass(eq=False, repr=False)
class KombuEventReader(EventReader):
    _: KW_ONLY
    durable_queue: str | None = None
    queue_max_length: int = 1_000_000
    queue_prefix: str = "fleetops.events"
    # Messages delivered but not yet acknowledged, on the durable queue: the sink holds them
    # until they are safe, so this must cover what it holds at full rate (docs/history.md).
    prefetch: int = 50_000

    def __post_init__(self) -> None:
        super().__post_init__()
        self.private_name = f"{self.queue_prefix}.{uuid.uuid4()}"
        self.manual_ack = bool(self.durable_queue)
        self.acks = AckLine()
        self._pending: list[tuple[str | None, object]] = []
        self._pending_bytes = 0
        self._last_flush = time.monotonic()
        # Reader thread only: the connection's generation, the last tag it delivered and the
        # last one acknowledged on it.
        self._generation = 0
        self._last_tag = 0
        self._acked_tag = 0

    def acknowledge(self, delivery: Delivery) -> None:
        self.acks.release(delivery)

    def events_queue(self, conn: Connection) -> Queue:
        # Celery publishes events on a topic exchange, but on a fanout one over kombu's Redis
        # transport (pub/sub): declare the same, or the broker refuses or routes nothing.
        kind = "fanout" if conn.transport.driver_type == "redis" else "topic"
        exchange = Exchange(EXCHANGE, type=kind, durable=True, auto_delete=False)
        if self.durable_queue:
            return Queue(
                self.durable_queue, exchange, routing_key="#", durable=True, auto_delete=False,
                queue_arguments={"x-max-length": self.queue_max_length},
            )  # fmt: skip
        return Queue(
            self.private_name, exchange, routing_key="#", durable=False, auto_delete=True,
            message_ttl=PRIVATE_QUEUE_TTL, expires=PRIVATE_QUEUE_EXPIRES,
        )  # fmt: skip

    def _on_message(self, message) -> None:  # type: ignore[no-untyped-def]
        body = message.body
        self._last_tag = message.delivery_tag
        self._pending.append((message.content_type, body))
        self._pending_bytes += len(body) if isinstance(body, bytes | str) else 64
        self.status.messages += 1
        if len(self._pending) >= FLUSH_AT:
            self._flush()

    def _flush(self) -> None:
        self._last_flush = time.monotonic()
        if self._pending:
            pending, self._pending = self._pending, []
            size, self._pending_bytes = self._pending_bytes, 0
            self.status.bytes += size
            delivery = Delivery(self._generation, self._last_tag) if self.manual_ack else None
            self.queue.put(Batch(BODIES, pending, size, self._last_flush, delivery))

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                with Connection(self.url, connect_timeout=5) as conn:
                    conn.ensure_connection(max_retries=1)
                    # A new channel: tags from here on are new, and older ones meaningless.
                    self._generation += 1
                    self._last_tag = self._acked_tag = 0
                    self.status.unacked = 0
                    with Consumer(
                        conn.default_channel,
                        queues=[self.events_queue(conn)],
                        on_message=self._on_message,
                        no_ack=not self.manual_ack,
                        prefetch_count=self.prefetch if self.manual_ack else None,
                        accept=["json"],
                    ):
                        self.status.on_connected()
                        self.backoff.reset()
                        log.info("reading events through kombu from %s", conn.as_uri())
                        self._drain(conn, stop)
            except Exception as exc:  # kombu raises transport-specific errors
                self._flush()
                self.status.unacked = 0
                self.status.on_disconnected(f"lost the event stream: {exc}")
                log.warning("event stream through kombu failed: %s; retrying with backoff", exc)
                stop.wait(self.backoff.next_delay())
        self._flush()

    def _drain(self, conn: Connection, stop: threading.Event) -> None:
        status = self.status
        while not stop.is_set():
            status.last_beat = time.monotonic()
            try:
                conn.drain_events(timeout=FLUSH_EVERY)
            except TimeoutError:
                conn.heartbeat_check()
            if time.monotonic() - self._last_flush >= FLUSH_EVERY:
                self._flush()
            if self.manual_ack:
                self._apply_acks(conn)

    def _apply_acks(self, conn: Connection) -> None:
        """Acknowledge what the sink released, on this connection's channel only."""
        delivery = self.acks.latest
        if (
            delivery is not None
            and delivery.generation == self._generation
            and delivery.tag > self._acked_tag
        ):
            conn.default_channel.basic_ack(delivery.tag, multiple=True)
            self._acked_tag = delivery.tag
        self.status.unacked = self._last_tag - self._acked_tag
