"""The recorder's event sources: one per Celery app it follows (FleetSettings.effective_apps),
each with its own broker connection, reader and consumer threads, as the one-app recorder
always had. All of them feed the one buffer and writer.

An event's app is the app whose broker delivered it: the source stamps it on every checked
event (the checker builds each event afresh, so an ``app`` field an event brings is never
kept). Nothing an event says can move it to another app's history (docs/history.md,
"Several apps").

A source whose broker is down reconnects on its own (exporters/stream/backoff.py) and costs
the others nothing: the threads are its own, and the buffer never blocks a producer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from exporters.history.settings import HistorySettings
from exporters.stream.acks import Delivery
from exporters.stream.consumer import EventStream, is_amqp_url
from exporters.stream.events import KNOWN_TYPES
from fleetops.apps import App, broker_identity

if TYPE_CHECKING:
    from exporters.history.buffer import SpillingBuffer
    from exporters.history.metrics import RecorderMetrics

log = logging.getLogger("exporters.history.recorder")


def queue_name(settings: HistorySettings, app: str) -> str:
    """The app's durable queue on RabbitMQ. The app a one-app recorder followed
    (FLEETOPS_APP_NAME) keeps FLEETOPS_HISTORY_QUEUE_NAME, so the events that waited there
    while the recorder was upgraded are read; every other app gets a queue of its own."""
    base = settings.history_queue_name
    return base if app == settings.app_name else f"{base}.{app}"


def check_distinct_brokers(apps: list[App]) -> None:
    """Two apps on one broker URL would be one event stream recorded twice under two names."""
    seen: dict[tuple[object, ...], str] = {}
    for app in apps:
        identity = broker_identity(app.broker_url)  # one broker however its URL is written
        if identity in seen:
            raise ValueError(
                f"apps {seen[identity]!r} and {app.name!r} have the same broker URL: the"
                " recorder could not tell their events apart"
            )
        seen[identity] = app.name


class AppSource:
    """One app's event stream, and the sink that stamps its events and queues them."""

    def __init__(
        self,
        app: App,
        settings: HistorySettings,
        buffer: SpillingBuffer,
        metrics: RecorderMetrics,
        on_dropped: Callable[[int, str, str], None],
    ) -> None:
        self.name = app.name
        self._buffer = buffer
        self._on_dropped = on_dropped
        durable = is_amqp_url(app.broker_url)
        self.stream = EventStream(
            app.broker_url,
            self,
            # On RabbitMQ a durable named queue, so events wait for the recorder while it
            # restarts; the broker keeps at most history_queue_max_length of them.
            durable_queue=queue_name(settings, app.name) if durable else None,
            queue_max_length=settings.history_queue_max_length,
            prefetch=settings.history_prefetch,
            buffer_bytes=settings.history_handover_bytes,
            logger=log,
            stall_after=settings.history_stall_after,
        )
        self._event_counters = {kind: metrics.events.labels(kind, app.name) for kind in KNOWN_TYPES}
        self._reconnects = metrics.broker_reconnects.labels(app.name)
        status = self.stream.status
        metrics.broker_up.labels(app.name).set_function(lambda: int(status.connected))
        metrics.unacknowledged.labels(app.name).set_function(lambda: status.unacked)
        self._overflow_counted = 0

    # -- the stream's sink (this source's consumer thread) -------------------------------
    def apply(self, events: list[dict[str, Any]], received_at: float) -> None:
        counts: dict[str, int] = {}
        app = self.name
        for event in events:
            kind = event["type"]
            counts[kind] = counts.get(kind, 0) + 1
            event["app"] = app
        for kind, count in counts.items():
            self._event_counters[kind].inc(count)
        self._buffer.put_many(events)

    def tick(self, now: float) -> None:
        # Messages the hand-over between reader and consumer dropped while the consumer was
        # behind: lost before anything could read them, so counted here or nowhere.
        lost = self.stream.overflow_events()
        if lost > self._overflow_counted:
            self._on_dropped(lost - self._overflow_counted, "overflow", self.name)
            self._overflow_counted = lost

    def reconnected(self, now: float) -> None:
        self._reconnects.inc()

    def delivered(self, delivery: Delivery) -> None:
        # After the batch's events were queued: acknowledged once those and all before them
        # are committed, in order; each app's deliveries on their own line (their broker).
        self._buffer.when_committed((self, delivery), line=self.name)

    def acknowledge(self, delivery: Delivery) -> None:
        self.stream.acknowledge(delivery)
