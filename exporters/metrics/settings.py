"""Settings of ``fleetops exporter``: FLEETOPS_EXPORTER_* variables, overridden by CLI options."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from exporters.metrics.histogram import DEFAULT_BUCKETS
from exporters.stream.health import STALL_AFTER
from fleetops.settings import FleetSettings, load_settings

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RESERVED_LABELS = {"name", "hostname", "queue_name", "exception", "le", "state", "priority"}


class ExporterSettings(FleetSettings):
    # 127.0.0.1 by default; set 0.0.0.0 (or an address) so Prometheus on another host can scrape.
    exporter_host: str = "127.0.0.1"
    exporter_port: int = Field(9808, ge=0, le=65535)
    exporter_metric_prefix: str = "celery_"
    exporter_static_labels: dict[str, str] = Field(default_factory=dict)
    exporter_buckets: list[float] = Field(default_factory=lambda: list(DEFAULT_BUCKETS))
    # A worker is down once silent this long (Celery workers send a heartbeat every 2 s).
    exporter_worker_timeout: float = Field(30.0, gt=0)
    # ...and its series are dropped once silent this long (0 keeps them forever).
    exporter_purge_offline_after: float = Field(600.0, ge=0)
    exporter_max_series: int = Field(200_000, ge=100)
    exporter_max_tasks: int = Field(200_000, ge=100)
    # Distinct values each label may take; past the cap new ones are reported as
    # "__overflow__" and counted, so random names from a faulty producer cannot grow the series.
    # The broker poller polls at most exporter_max_queues queues.
    exporter_max_queues: int = Field(1_000, ge=1)
    exporter_max_task_names: int = Field(5_000, ge=1)
    exporter_max_hostnames: int = Field(5_000, ge=1)
    exporter_max_exceptions: int = Field(1_000, ge=1)
    # An event dated further ahead of this exporter's clock is dated now (and counted): a
    # far-future timestamp would otherwise keep the event lag at 0 and hide a stopped stream.
    exporter_max_clock_skew: float = Field(300.0, gt=0)
    # A part (reader, applier, poller) that has not gone round its loop for this long, or has
    # left work waiting this long, is stalled: /healthz answers 503, fleetops_exporter_stalled.
    exporter_stall_after: float = Field(STALL_AFTER, gt=0)
    # How long a task's first events wait for its late task-sent (which alone names the queue).
    exporter_reorder_window: float = Field(2.0, ge=0, le=60)
    exporter_poll_interval: float = Field(5.0, gt=0)
    # Queues to report even before any event names them (others are discovered).
    exporter_queues: list[str] = Field(default_factory=list)
    exporter_dead_letter_queue: str = "dead_letter"
    exporter_event_reader: Literal["auto", "redis", "kombu"] = "auto"
    exporter_buffer_bytes: int = Field(64 * 1024 * 1024, ge=1024 * 1024)

    @field_validator("exporter_metric_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value and not _METRIC_NAME.match(value):
            raise ValueError(f"{value!r} is not a valid Prometheus metric name prefix")
        return value

    @field_validator("exporter_static_labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _LABEL_NAME.match(key) or key.startswith("__"):
                raise ValueError(f"{key!r} is not a valid Prometheus label name")
            if key in RESERVED_LABELS:
                raise ValueError(f"{key!r} is a label the exporter sets itself")
        return value

    @field_validator("exporter_buckets")
    @classmethod
    def _buckets(cls, value: list[float]) -> list[float]:
        if not value or any(b <= 0 for b in value):
            raise ValueError("buckets must be positive numbers of seconds, e.g. 0.1,1,10,300")
        return value


def load(**overrides: object) -> ExporterSettings:
    given = {k: v for k, v in overrides.items() if v is not None}
    return load_settings(ExporterSettings, **given)
