"""The recorder's own metrics (names in docs/metrics.md, section "Task history recorder")."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


@dataclass
class RecorderMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.events = Counter(
            "fleetops_history_events", "Events consumed, by event type.", ["type"], registry=r
        )
        self.written = Counter(
            "fleetops_history_events_written", "Events written to the database.", registry=r
        )
        self.malformed = Counter(
            "fleetops_history_events_malformed",
            "Events skipped because a field could not be read.",
            registry=r,
        )
        self.dropped = Counter(
            "fleetops_history_events_dropped",
            "Events lost because the buffer bound was hit (memory and disk spool full).",
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
            "fleetops_history_broker_up", "1 while the event source is connected.", registry=r
        )
        self.broker_reconnects = Counter(
            "fleetops_history_broker_reconnects", "Reconnects to the broker.", registry=r
        )
        for reason in ("buffer_full",):
            self.dropped.labels(reason)
        for kind in ("unavailable", "rejected"):
            self.write_errors.labels(kind)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        if port:
            start_http_server(port, addr=host, registry=self.registry)
