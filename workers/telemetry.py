"""Worker memory and reliability telemetry as Celery events.

One line in any Celery app turns it on::

    from workers.telemetry import enable_telemetry
    enable_telemetry(app)

Every interval each worker sends a ``worker-telemetry`` event (fields in docs/metrics.md) with
the resident memory of its main process plus pool children and its memory limit, so the
exporter, Flower or any other event consumer can compare memory with the breaking points
without polling the worker's host. The same event announces the settings that decide what
happens to a task when things go wrong (:func:`reliability`): the broker's visibility timeout,
``task_acks_late`` and each task's hard time limit, so the exporter can tell orphaned, stuck and
twice-run tasks and the visibility-timeout trap (docs/exporter.md) without being told the
fleet's configuration.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import urlsplit

import psutil
from celery import Celery, bootsteps

from fleetops.settings import field_default
from workers.config import WorkerSettings

log = logging.getLogger(__name__)

EVENT_TYPE = "worker-telemetry"
INTERVAL_SETTING = "fleetops_telemetry_interval"
# An app that never calls enable_telemetry(app, interval) gets the setting's own default.
DEFAULT_INTERVAL: float = field_default(WorkerSettings, "telemetry_interval")
# cgroup v1 reports "no limit" as a number close to 2**63.
_UNLIMITED = 1 << 60
# Transports that hand an unacknowledged message to another consumer after a visibility
# timeout, with kombu's default where the app sets none. RabbitMQ (amqp) redelivers when the
# consumer's connection closes instead: it has no such timeout.
VISIBILITY_TIMEOUT_DEFAULTS = {
    "redis": 3600.0,
    "rediss": 3600.0,
    "sentinel": 3600.0,
    "sqs": 1800.0,
}
# The exporter keeps at most this many (exporters/stream/events.py).
MAX_TIME_LIMITS = 500


def memory_limit_bytes() -> int:
    """The cgroup memory limit of this process where one is set, else the host's memory."""
    for path in (
        Path("/sys/fs/cgroup/memory.max"),
        Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
    ):
        try:
            raw = path.read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < _UNLIMITED:
            return int(raw)
    return psutil.virtual_memory().total


def resident_bytes(pid: int | None = None) -> int:
    process = psutil.Process(pid or os.getpid())
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:  # a pool child may exit between listing and reading
            continue
    return total


def snapshot(pool_size: int, max_memory_per_child_kb: int | None) -> dict:
    rss, limit = resident_bytes(), memory_limit_bytes()
    return {
        "rss_bytes": rss,
        "memory_limit_bytes": limit,
        "memory_percent": round(100.0 * rss / limit, 3),
        "pool_size": pool_size,
        "max_memory_per_child_kb": max_memory_per_child_kb,
    }


def _scheme(broker_url: object) -> str:
    # A failover list ("redis://a;redis://b", or a list) shares one transport.
    first = broker_url[0] if isinstance(broker_url, list | tuple) and broker_url else broker_url
    if not isinstance(first, str):
        return ""
    return urlsplit(first.split(";", 1)[0]).scheme.lower()


def _seconds(value: object) -> float | None:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return seconds if 0 < seconds < float("inf") else None


def reliability(app: Celery) -> dict:
    """What the exporter needs to know of this worker's settings (contract: docs/workers.md):
    ``visibility_timeout`` (only for transports that have one), ``acks_late`` and
    ``time_limits``, the effective hard limit of each registered task that has one."""
    conf = app.conf
    fields: dict = {"acks_late": bool(conf.task_acks_late)}
    default = VISIBILITY_TIMEOUT_DEFAULTS.get(_scheme(conf.broker_url))
    if default is not None:
        options = conf.broker_transport_options or {}
        fields["visibility_timeout"] = _seconds(options.get("visibility_timeout")) or default
    app_limit = _seconds(conf.task_time_limit)
    limits: dict[str, float] = {}
    for name in sorted(app.tasks):
        if name.startswith("celery."):
            continue
        own = getattr(app.tasks[name], "time_limit", None)
        limit = _seconds(own) if own is not None else app_limit
        if limit is not None:
            limits[name] = limit
            if len(limits) == MAX_TIME_LIMITS:
                break
    fields["time_limits"] = limits
    return fields


class TelemetryStep(bootsteps.StartStopStep):
    """Consumer step: sends telemetry through the consumer's own event dispatcher."""

    requires = ("celery.worker.consumer.events:Events",)

    def __init__(self, parent, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(parent, **kwargs)
        self.timer_ref = None
        # Settings do not change while a worker runs: read once, at its first send.
        self.settings: dict | None = None
        self.interval = float(parent.app.conf.get(INTERVAL_SETTING) or DEFAULT_INTERVAL)

    def start(self, consumer) -> None:  # type: ignore[no-untyped-def]
        self.timer_ref = consumer.timer.call_repeatedly(
            self.interval, self.send, (consumer,), priority=10
        )
        self.send(consumer)

    def stop(self, consumer) -> None:  # type: ignore[no-untyped-def]
        if self.timer_ref is not None:
            self.timer_ref.cancel()
            self.timer_ref = None

    def send(self, consumer) -> None:  # type: ignore[no-untyped-def]
        dispatcher = getattr(consumer, "event_dispatcher", None)
        if dispatcher is None or not dispatcher.enabled:
            return
        pool = getattr(consumer, "pool", None)
        pool_size = getattr(pool, "num_processes", None) or getattr(pool, "limit", 0) or 0
        try:
            if self.settings is None:
                self.settings = reliability(consumer.app)
            fields = snapshot(int(pool_size), consumer.app.conf.worker_max_memory_per_child)
            dispatcher.send(EVENT_TYPE, **fields, **self.settings)
        except Exception:  # telemetry must never take the worker down
            log.exception("could not send worker telemetry")


def enable_telemetry(app: Celery, interval: float | None = None) -> None:
    if interval is not None:
        app.conf[INTERVAL_SETTING] = interval
    app.steps["consumer"].add(TelemetryStep)
