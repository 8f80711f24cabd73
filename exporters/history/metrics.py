"""The recorder's own metrics (names in docs/metrics.md, section "Task history recorder").

What belongs to one app's event stream (its broker, reader and consumer, what they consumed and
rejected) carries the ``app`` label (fleetops.apps.APP_LABEL); what the one writer does (buffer,
database, retention) does not: it serves every app at once."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from exporters.stream.health import Part
from exporters.stream.rejects import Rejections
from fleetops.apps import APP_LABEL


@dataclass
class RecorderMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.events = Counter(
            "fleetops_history_events",
            "Events consumed, by event type and app.",
            ["type", APP_LABEL],
            registry=r,
        )
        self.written = Counter(
            "fleetops_history_events_written", "Events written to the database.", registry=r
        )
        self.malformed = Counter(
            "fleetops_history_events_malformed",
            "Events skipped because a field could not be read.",
            registry=r,
        )
        self.quarantined = Counter(
            "fleetops_history_events_quarantined",
            "Events the database refused even one by one, moved to the quarantine files.",
            registry=r,
        )
        self.dropped = Counter(
            "fleetops_history_events_dropped",
            "Events lost, by reason: overflow (arriving faster than the recorder reads them),"
            " buffer_full (memory and disk spool full), spool_error, quarantine_full, other_app"
            " (a task id another app's events already hold).",
            ["reason"],
            registry=r,
        )
        self.buffered = Gauge(
            "fleetops_history_buffered_events",
            "Events waiting to be written, by where they wait.",
            ["where"],
            registry=r,
        )
        self.spool_bytes = Gauge(
            "fleetops_history_spool_bytes", "Bytes of events spooled to disk.", registry=r
        )
        self.spool_limit = Gauge(
            "fleetops_history_spool_limit_bytes", "The disk spool's bound.", registry=r
        )
        self.database_up = Gauge(
            "fleetops_history_database_up", "1 while the last write succeeded.", registry=r
        )
        self.write_errors = Counter(
            "fleetops_history_write_errors", "Failed batch writes, by kind.", ["kind"], registry=r
        )
        self.last_write = Gauge(
            "fleetops_history_last_write_timestamp_seconds",
            "When a batch was last committed.",
            registry=r,
        )
        self.pruned = Counter(
            "fleetops_history_rows_pruned", "Task rows removed by retention.", ["reason"],
            registry=r,
        )  # fmt: skip
        self.broker_up = Gauge(
            "fleetops_history_broker_up",
            "1 while the app's event source is connected.",
            [APP_LABEL],
            registry=r,
        )
        self.broker_reconnects = Counter(
            "fleetops_history_broker_reconnects",
            "Reconnects to the app's broker.",
            [APP_LABEL],
            registry=r,
        )
        self.unacknowledged = Gauge(
            "fleetops_history_unacknowledged_messages",
            "Messages RabbitMQ delivered that the recorder has not acknowledged yet (not yet"
            " committed); 0 on Redis.",
            [APP_LABEL],
            registry=r,
        )
        for reason in ("overflow", "buffer_full", "spool_error", "quarantine_full", "other_app"):
            self.dropped.labels(reason)
        for kind in ("unavailable", "rejected", "conflict"):
            self.write_errors.labels(kind)

    def watch_streams(
        self, rejections: dict[str, Rejections], parts: Callable[[], list[tuple[Part, str]]]
    ) -> None:
        """Export each app's rejections and the health of every part at scrape time; ``parts``
        gives each part with its app ("" for the writer, which serves them all)."""
        self.registry.register(_StreamCollector(rejections, parts))

    def render(self, names: frozenset[str] | None = None) -> bytes:
        registry = self.registry.restricted_registry(names) if names else self.registry
        return generate_latest(registry)


class _StreamCollector(Collector):
    def __init__(
        self, rejections: dict[str, Rejections], parts: Callable[[], list[tuple[Part, str]]]
    ) -> None:
        self.rejections = rejections
        self.parts = parts

    def collect(self):  # type: ignore[no-untyped-def]
        yield _by_reason(
            "fleetops_history_events_rejected",
            "Events dropped because they could not be used, by reason and app.",
            {app: rejections.counts() for app, rejections in self.rejections.items()},
        )
        yield _by_reason(
            "fleetops_history_events_corrected",
            "Fields repaired in events that were kept, by reason and app.",
            {app: rejections.corrections() for app, rejections in self.rejections.items()},
        )
        now = time.monotonic()
        parts = self.parts()
        gauge = GaugeMetricFamily(
            "fleetops_history_stalled",
            "1 while a part of the recorder has died or makes no progress (see /healthz); app"
            ' "" for the writer, which serves every app.',
            labels=["part", APP_LABEL],
        )
        age = GaugeMetricFamily(
            "fleetops_history_part_heartbeat_age_seconds",
            "Seconds since each part of the recorder last went round its loop.",
            labels=["part", APP_LABEL],
        )
        for part, app in parts:
            gauge.add_metric([part.name, app], int(part.problem(now) is not None))
            age.add_metric([part.name, app], round(part.age(now), 3))
        yield gauge
        yield age


def _by_reason(name: str, help_text: str, counts: dict[str, dict[str, int]]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, help_text, labels=["reason", APP_LABEL])
    for app, by_reason in counts.items():
        for reason, count in sorted(by_reason.items()):
            family.add_metric([reason, app], count)
    return family
