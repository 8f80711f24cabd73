"""Settings of ``fleetops exporter``: FLEETOPS_EXPORTER_* variables, overridden by CLI options."""

from __future__ import annotations

import json
import re
import socket
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from exporters.metrics import worker_groups
from exporters.metrics.histogram import DEFAULT_BUCKETS
from exporters.stream.health import STALL_AFTER
from fleetops import ports, task_faults
from fleetops.apps import APP_LABEL, check_entry_name, name_value_pairs
from fleetops.settings import FleetSettings, load_settings, shown_as
from workers.queues import DEAD_LETTER

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RESERVED_LABELS = {
    "name",
    "hostname",
    "queue_name",
    "exception",
    "le",
    "state",
    "priority",
    "worker_group",
}
# Each app's pipeline sets it (exporters/metrics/apps.py): a static one would hide which app.
RESERVED_LABELS.add(APP_LABEL)
# A replica name becomes a Prometheus label value and a log field: short and printable.
_REPLICA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$")
# Seconds of a bound or timeout: positive and finite (NaN and inf are refused, not compared).
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]


def default_replica() -> str:
    """This host's name: two replicas on one host must be given names."""
    name = socket.gethostname().split(".")[0]
    return name if _REPLICA_NAME.match(name) else "exporter"


class ExporterSettings(FleetSettings):
    exporter_host: str = ports.LOOPBACK
    """Address to listen on; 0.0.0.0 lets Prometheus on other hosts scrape."""
    exporter_port: int = Field(ports.EXPORTER, ge=0, le=65535)
    """Port of /metrics and /healthz."""
    # The scrape configuration gives the same name as the `replica` target label, which the
    # shipped rules and dashboards drop when they deduplicate (docs/exporter.md, "Replicas").
    exporter_replica: str = Field(
        default_factory=default_replica, json_schema_extra=shown_as("this host's name")
    )
    """Name of this exporter among replicas reading the same fleet side by side."""
    exporter_metric_prefix: str = "celery_"
    """Prefix of the peer-compatible metrics."""
    exporter_static_labels: dict[str, str] = Field(default_factory=dict)
    """key=value labels added to every series."""
    exporter_buckets: list[float] = Field(default_factory=lambda: list(DEFAULT_BUCKETS))
    """Histogram bucket bounds in seconds; the task-latency breaking points are always added."""
    # Celery workers send a heartbeat every 2 s.
    exporter_worker_timeout: float = Field(30.0, gt=0)
    """Seconds without a heartbeat before a worker is down."""
    exporter_purge_offline_after: float = Field(600.0, ge=0)
    """Seconds after which a silent worker's series are dropped; 0 keeps them."""
    exporter_max_series: int = Field(200_000, ge=100)
    """Cap on series held."""
    exporter_max_tasks: int = Field(200_000, ge=100)
    """Cap on tasks in flight remembered for latencies."""
    # Past a cap new values are reported as "__overflow__" and counted, so random names from a
    # faulty producer cannot grow the series.
    exporter_max_queues: int = Field(1_000, ge=1)
    """Distinct queue_name values, and queues polled at most."""
    exporter_max_task_names: int = Field(5_000, ge=1)
    """Distinct task names."""
    exporter_max_hostnames: int = Field(5_000, ge=1)
    """Distinct worker hostnames."""
    # Autoscaled pods each bring a name of their own: the task counters and histograms count
    # under the group instead (docs/exporter.md, "Worker groups (autoscaling)").
    exporter_worker_groups: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Regular expressions mapping a worker hostname to its group (the named group `group`, else
    the first capture group) for the task series, e.g. `celery@(.+)-[a-z0-9]+-[a-z0-9]+`; a JSON
    array or one per line. Unset: every worker counts under its own hostname."""
    exporter_max_exceptions: int = Field(1_000, ge=1)
    """Distinct exception types."""
    # A far-future timestamp would otherwise keep the event lag at 0 and hide a stopped stream.
    exporter_max_clock_skew: float = Field(300.0, gt=0)
    """An event dated more seconds ahead of this exporter's clock is dated now, and counted."""
    exporter_stall_after: float = Field(STALL_AFTER, gt=0)
    """A part (reader, applier, poller) stuck or leaving work waiting this many seconds is stalled:
    /healthz answers 503."""
    # Only task-sent names the queue, and a producer may publish it after the worker's events.
    exporter_reorder_window: float = Field(2.0, ge=0, le=60)
    """Seconds a task's events wait for its late task-sent; 0 turns the wait off."""
    exporter_poll_interval: float = Field(5.0, gt=0)
    """Seconds between broker queue polls."""
    exporter_queues: list[str] = Field(default_factory=list)
    """Queues to report even before an event names them (others are discovered)."""
    exporter_dead_letter_queue: str = DEAD_LETTER
    """The dead-letter queue, reported by fleetops_dead_letter_length."""
    exporter_event_reader: Literal["auto", "redis", "kombu"] = "auto"
    """auto (direct Redis when the broker is Redis), redis or kombu."""
    exporter_buffer_bytes: int = Field(64 * 1024 * 1024, ge=1024 * 1024)
    """Bound of raw event batches handed from the reader to the applier."""
    # Workers announce theirs (worker-telemetry); this is for fleets whose workers do not, or
    # whose transport options the workers do not see as the broker applies them.
    exporter_visibility_timeout: Seconds | None = None
    """Broker visibility timeout in seconds; unset: the smallest the live workers announce."""
    exporter_stuck_after: Seconds = task_faults.DEFAULT_STUCK_AFTER_SECONDS
    """Seconds a task may run before it is stuck, when it has no bound or known time limit."""
    exporter_stuck_bounds: dict[str, Seconds] = Field(default_factory=dict)
    """Seconds each named task may run before it is stuck (JSON object in the environment)."""

    @field_validator("exporter_metric_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value and not _METRIC_NAME.match(value):
            raise ValueError(f"{value!r} is not a valid Prometheus metric name prefix")
        return value

    @field_validator("exporter_replica")
    @classmethod
    def _replica(cls, value: str) -> str:
        if not _REPLICA_NAME.match(value):
            raise ValueError(
                f"{value[:80]!r} is not a replica name: 1 to 63 letters, digits, '_', '.', ':'"
                " or '-', starting with a letter or digit"
            )
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

    @field_validator("exporter_worker_groups", mode="before")
    @classmethod
    def _worker_groups(cls, value: object) -> list[str]:
        return worker_groups.parse_patterns(value)

    @field_validator("exporter_stuck_bounds")
    @classmethod
    def _stuck_bounds(cls, value: dict[str, float]) -> dict[str, float]:
        for name in value:
            if not name or len(name) > 255:
                raise ValueError(f"{name[:80]!r} is not a task name")
        return value

    # RabbitMQ management API (docs/exporter.md, "RabbitMQ").
    exporter_rabbitmq_management_urls: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict
    )
    """RabbitMQ management API per app: app=http://user:password@host:15672 pairs separated by
    commas (or a JSON object); one URL alone serves every app; off: AMQP only. Unset: the broker's
    host and credentials on port 15672."""
    exporter_rabbitmq_management_timeout: Seconds = 5.0
    """Seconds to wait for the RabbitMQ management API before polling through AMQP instead."""

    @field_validator("exporter_rabbitmq_management_urls", mode="before")
    @classmethod
    def _management_urls(cls, value: object) -> dict[str, str]:
        return parse_management_urls(value)

    def rabbitmq_management_url(self, app: str) -> str | None:
        """The management URL set for ``app`` (or for every app); None: the default one."""
        urls = self.exporter_rabbitmq_management_urls
        return urls.get(app, urls.get(EVERY_APP))


EVERY_APP = "*"


def parse_management_urls(value: object) -> dict[str, str]:
    """``app=url,app=url``, a JSON object, or one URL for every app -> {app or "*": url}."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"not a JSON object: {exc}") from exc
        elif text.lower() == "off" or "://" in text.split("=", 1)[0]:
            value = {EVERY_APP: text}
        else:
            value = name_value_pairs(text, "management-url")
    if not isinstance(value, dict):
        raise ValueError("expected app=management-url pairs, a JSON object or one URL")
    urls: dict[str, str] = {}
    for index, (app, url) in enumerate(value.items(), start=1):
        if app != EVERY_APP:
            check_entry_name(index, app)
        if not isinstance(url, str) or not (
            url.lower() == "off" or url.startswith(("http://", "https://"))
        ):
            raise ValueError(f"app {app!r}: expected an http(s):// URL or off")
        urls[app] = url
    return urls


def load(**overrides: object) -> ExporterSettings:
    given = {k: v for k, v in overrides.items() if v is not None}
    return load_settings(ExporterSettings, **given)
