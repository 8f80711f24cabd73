"""Settings of ``fleetops exporter``: FLEETOPS_EXPORTER_* variables, overridden by CLI options."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from exporters.metrics.histogram import DEFAULT_BUCKETS
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
