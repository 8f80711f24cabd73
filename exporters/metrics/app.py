"""Wire the exporter's threads together: read, apply, poll, serve.

- reader  : broker -> BatchQueue (never blocks; see exporters/stream)
- applier : BatchQueue -> decode and check (exporters/stream/consumer.py) -> FleetState, under
            ``lock``, one batch at a time; the exporter is the stream's sink
- poller  : broker queues -> QueueSnapshot (replaced whole; the previous one is kept when the
            broker does not answer, so values survive an outage)
- http    : renders FleetState + the snapshot under ``lock``; never talks to the broker

/healthz and ``fleetops_exporter_stalled{part}`` come from the same check of every thread's
progress (exporters/stream/health.py).

One :class:`Exporter` follows one Celery app on its broker and labels every series it renders
``app="<name>"``; exporters/metrics/apps.py runs one per app behind one HTTP server.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time

from exporters.metrics.amqp_poller import KombuPoller
from exporters.metrics.histogram import with_required
from exporters.metrics.queues import QueueSnapshot, queues_to_poll
from exporters.metrics.redis_poller import RedisPoller
from exporters.metrics.render import Extras, Renderer, Thresholds
from exporters.metrics.settings import ExporterSettings
from exporters.metrics.state import FleetState, Limits
from exporters.metrics.worker_queues import WorkerQueues, consumers_per_queue
from exporters.stream import health
from exporters.stream.acks import Delivery
from exporters.stream.consumer import EventStream, is_redis_url
from exporters.stream.events import EventLimits
from exporters.stream.health import Beat, Part
from fleetops import breaking_points
from fleetops.apps import APP_LABEL, App

log = logging.getLogger(__name__)

HOUSEKEEPING_EVERY = 1.0
# Splits render_health()'s text into families, each part starting with its "# HELP" line.
HEALTH_FAMILY_START = re.compile(r"(?m)^(?=# HELP )")
RENDER_LOCK_TIMEOUT = 3.0
# Every app waits at least this long for its lock, even once a stuck app has spent the shared
# deadline: a healthy applier holds its lock only for one batch, and it must not lose its
# series because another app froze.
RENDER_LOCK_FLOOR = 0.25
# How long stopping waits for the threads, in all (several apps share one deadline).
STOP_TIMEOUT = 10.0


def load_thresholds() -> Thresholds:
    points = breaking_points.current()
    return Thresholds(
        breaking_points=[
            (name, str(level), value)
            for name, signal in sorted(points.signals.items())
            for level, value in signal.thresholds().items()
        ],
        objectives=[("task_success_ratio", points.objectives.task_success_ratio)],
    )


def latency_breaking_points() -> tuple[float, ...]:
    return tuple(breaking_points.current().task_latency.thresholds().values())


def pipeline_logger(app: str) -> logging.Logger:
    """The logger of one app's pipeline: its name says which app a line is about."""
    return logging.getLogger(f"{__name__}.{app}")


class Exporter:
    """One app's pipeline: its event stream, state, poller, worker queues and lock. Without
    ``app``, the one app of the settings (FLEETOPS_APP_NAME on the broker URL)."""

    def __init__(self, settings: ExporterSettings, app: App | None = None) -> None:
        self.settings = settings
        self.app = app or App(settings.app_name, settings.broker_url)
        url = self.app.broker_url
        self.log = pipeline_logger(self.app.name)
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.state = FleetState(
            bounds=with_required(tuple(settings.exporter_buckets), latency_breaking_points()),
            limits=Limits.from_settings(settings),
        )
        self.stream = EventStream(
            url,
            self,
            reader=settings.exporter_event_reader,
            buffer_bytes=settings.exporter_buffer_bytes,
            limits=EventLimits(max_future_seconds=settings.exporter_max_clock_skew),
            consumer_name="applier",
            logger=self.log,
            stall_after=settings.exporter_stall_after,
        )
        dlq = settings.exporter_dead_letter_queue
        self.poller: RedisPoller | KombuPoller = (
            RedisPoller(url, dead_letter_queue=dlq, max_queues=settings.exporter_max_queues)
            if is_redis_url(url)
            else KombuPoller(url, dlq)
        )
        self.worker_queues = WorkerQueues(url)
        self.snapshot = QueueSnapshot(ok=False, error="the broker has not been polled yet")
        self.consumers: dict[str, int] = {}
        self.thresholds = load_thresholds()
        # The app label comes first among the static labels: every series says its app.
        self.renderer = Renderer(
            settings.exporter_metric_prefix,
            {APP_LABEL: self.app.name, **settings.exporter_static_labels},
        )
        self.last_scrape_seconds = 0.0
        self.poller_beat = Beat()
        self._next_housekeeping = time.monotonic() + HOUSEKEEPING_EVERY
        self._poller_thread: threading.Thread | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.stream.start(self.stop_event)
        self._poller_thread = threading.Thread(target=self._poll_loop, name="poller", daemon=True)
        self._poller_thread.start()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Waits at most ``timeout`` in all for the threads (the caller may share a deadline)."""
        deadline = time.monotonic() + timeout
        self.stop_event.set()
        self.stream.join(timeout=max(0.0, deadline - time.monotonic()))
        if self._poller_thread is not None:
            self._poller_thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if self._poller_thread.is_alive():
                # Mid-poll past the deadline: closing its connections under it would only
                # raise there; the process is on its way out and the OS closes them.
                log.warning("the broker poller did not stop in time; leaving its connections")
                return
        self.poller.close()
        self.worker_queues.close()

    # ---- the stream's sink (called on the applier thread) -------------------------------------

    def apply(self, events: list[dict], received_at: float) -> None:
        with self.lock:
            self.state.apply_all(events, received_at)

    def tick(self, now: float) -> None:
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + HOUSEKEEPING_EVERY
            with self.lock:
                self.state.stream_connected = self.stream.status.connected
                self.state.housekeeping(now)

    def reconnected(self, now: float) -> None:
        with self.lock:
            self.state.open_gap(now)

    def delivered(self, delivery: Delivery) -> None:
        # Its queue is auto-acknowledged; were it not, applied is all the exporter can do.
        self.stream.acknowledge(delivery)

    def apply_batch(self, kind: str, items: list, received_at: float) -> None:
        """Decode, check and apply one batch as the applier thread does (tests, benchmarks)."""
        self.stream.consume(kind, items, received_at)

    def overflow_events(self) -> int:
        return self.stream.overflow_events()

    def parts(self) -> list[Part]:
        poll_stall = max(
            self.settings.exporter_stall_after, 3 * self.settings.exporter_poll_interval
        )
        return [
            *self.stream.parts(),
            # The poller sleeps a poll interval between polls: it is late after three of them.
            Part("poller", self.poller_beat, self._poller_thread, stall_after=poll_stall),
        ]

    # ---- poller ------------------------------------------------------------------------------

    def _sent_at(self, task_id: str) -> float | None:
        record = self.state.tasks.get(task_id)
        return record.sent_ts if record is not None else None

    def _poll_loop(self) -> None:
        interval = self.settings.exporter_poll_interval
        failing = False
        while not self.stop_event.is_set():
            self.poller_beat.now()
            try:
                failing = self._poll_once(failing)
            except Exception as exc:  # a bug must not end polling: say it, keep the last values
                self.log.exception("queue poll failed unexpectedly: %s", exc)
                failing = True
            self.stop_event.wait(interval)

    def _queues_to_poll(self) -> set[str]:
        with self.lock:
            seen = self.state.known_queues()
        return queues_to_poll(
            seen, self.settings.exporter_queues, self.settings.exporter_max_queues
        )

    def _poll_once(self, failing: bool) -> bool:
        """One poll; True while the broker does not answer."""
        queues = self._queues_to_poll()
        with self.lock:
            now = time.monotonic()
            up_nodes = {w.node for w in self.state.workers.values() if self.state.worker_up(w, now)}
        try:
            snapshot = self.poller.poll(queues, self._sent_at)
            self.snapshot = snapshot
            if failing:
                self.log.info("the broker answers again")
            failing = False
            self.consumers = consumers_per_queue(self.worker_queues.update(up_nodes), up_nodes)
        except Exception as exc:  # any transport error: keep the last values, retry
            if not failing:
                self.log.warning(
                    "cannot poll the broker's queues: %s; keeping the last values", exc
                )
            failing = True
            self.snapshot = dataclasses.replace(
                self.snapshot, ok=False, error=f"broker poll failed: {exc}"
            )
        return failing

    # ---- serving -----------------------------------------------------------------------------

    def render(self, names: frozenset[str] | None = None) -> bytes:
        started = time.perf_counter()
        body = "".join(self.render_parts(names)).encode()
        if names is None:  # the whole answer, joined and encoded, as one app is served
            self.last_scrape_seconds = time.perf_counter() - started
        return body

    def render_parts(
        self, names: frozenset[str] | None = None, deadline: float | None = None
    ) -> list[str]:
        """The rendered text in parts, each family starting with its own ``# HELP`` part (as
        render.only() and apps.merge_families() read it). ``deadline`` (monotonic) bounds the
        wait for the lock; several apps rendered in one scrape share one."""
        started = time.perf_counter()
        if deadline is None:
            deadline = time.monotonic() + RENDER_LOCK_TIMEOUT
        now = time.monotonic()
        parts = self.parts()
        stalled = health.problems(parts, now)
        rejected = self.stream.rejections.counts()
        if self.state.internal_errors:
            rejected["internal_error"] = rejected.get("internal_error", 0) + (
                self.state.internal_errors
            )
        extras = Extras(
            status=self.stream.status,
            snapshot=self.snapshot,
            consumers=self.consumers,
            overflow_dropped=self.overflow_events(),
            last_scrape_seconds=self.last_scrape_seconds,
            thresholds=self.thresholds,
            rejected=rejected,
            corrected=self.stream.rejections.corrections(),
            stalled={p.name: int(p.name in stalled) for p in parts},
            heartbeat_age={p.name: round(p.age(now), 3) for p in parts},
            skipped_queues=getattr(self.poller, "skipped_queues", 0),
        )
        # A frozen applier may hold the lock: answer with the health families rather than
        # hang, so Prometheus sees fleetops_exporter_stalled instead of a scrape timeout.
        wait = max(RENDER_LOCK_FLOOR, deadline - time.monotonic())
        if not self.lock.acquire(timeout=wait):
            return HEALTH_FAMILY_START.split(self.renderer.render_health(extras))[1:]
        try:
            lines = self.renderer.render(self.state, extras, time.monotonic(), time.time(), names)
        finally:
            self.lock.release()
        if names is None:  # the gauge tells what Prometheus's full scrape costs
            self.last_scrape_seconds = time.perf_counter() - started
        return lines

    def health(self) -> tuple[bool, str]:
        problems = list(health.problems(self.parts()).values())
        if not self.stream.status.connected:
            problems.append(
                f"event stream down: {self.stream.status.last_error or 'not connected yet'}"
            )
        if not self.snapshot.ok:
            problems.append(self.snapshot.error or "broker not answering")
        if problems:
            return False, "unhealthy: " + "; ".join(problems)
        return True, "ok"
