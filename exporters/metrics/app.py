"""Wire the exporter's threads together: read, apply, poll, serve.

- reader  : broker -> BatchQueue (never blocks; see exporters/stream)
- applier : BatchQueue -> decode -> FleetState, under ``lock``, one batch at a time
- poller  : broker queues -> QueueSnapshot (replaced whole; the previous one is kept when the
            broker does not answer, so values survive an outage)
- http    : renders FleetState + the snapshot under ``lock``; never talks to the broker
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

from exporters.metrics.amqp_poller import KombuPoller
from exporters.metrics.histogram import with_required
from exporters.metrics.queues import QueueSnapshot
from exporters.metrics.redis_poller import RedisPoller, is_redis_url
from exporters.metrics.render import Extras, Renderer, Thresholds
from exporters.metrics.settings import ExporterSettings
from exporters.metrics.state import FleetState, Limits
from exporters.metrics.worker_queues import WorkerQueues, consumers_per_queue
from exporters.stream.batches import RAW, BatchQueue
from exporters.stream.envelope import DecodeError, decode
from exporters.stream.kombu_reader import KombuEventReader
from exporters.stream.redis_reader import RedisEventReader
from exporters.stream.status import StreamStatus
from fleetops import breaking_points

log = logging.getLogger(__name__)

HOUSEKEEPING_EVERY = 1.0


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


class Exporter:
    def __init__(self, settings: ExporterSettings) -> None:
        self.settings = settings
        url = settings.broker_url
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.state = FleetState(
            bounds=with_required(tuple(settings.exporter_buckets), latency_breaking_points()),
            limits=Limits(
                max_series=settings.exporter_max_series,
                max_tasks=settings.exporter_max_tasks,
                worker_timeout=settings.exporter_worker_timeout,
                purge_offline_after=settings.exporter_purge_offline_after,
                reorder_window=settings.exporter_reorder_window,
            ),
        )
        self.batches = BatchQueue(max_bytes=settings.exporter_buffer_bytes)
        self.status = StreamStatus()
        reader_kind = settings.exporter_event_reader
        if reader_kind == "auto":
            reader_kind = "redis" if is_redis_url(url) else "kombu"
        self.reader: RedisEventReader | KombuEventReader
        if reader_kind == "redis":
            self.reader = RedisEventReader(url, self.batches, self.status)
        else:
            self.reader = KombuEventReader(url, self.batches, self.status)
        dlq = settings.exporter_dead_letter_queue
        self.poller: RedisPoller | KombuPoller = (
            RedisPoller(url, dead_letter_queue=dlq) if is_redis_url(url) else KombuPoller(url, dlq)
        )
        self.worker_queues = WorkerQueues(url)
        self.snapshot = QueueSnapshot(ok=False, error="the broker has not been polled yet")
        self.consumers: dict[str, int] = {}
        self.thresholds = load_thresholds()
        self.renderer = Renderer(settings.exporter_metric_prefix, settings.exporter_static_labels)
        self.last_scrape_seconds = 0.0
        self.messages_applied = 0
        self.events_applied = 0
        self._threads: list[threading.Thread] = []

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        for name, target in (
            ("reader", lambda: self.reader.run(self.stop_event)),
            ("applier", self._apply_loop),
            ("poller", self._poll_loop),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self.poller.close()
        self.worker_queues.close()

    # ---- applier -----------------------------------------------------------------------------

    def _apply_loop(self) -> None:
        connects_seen = 0
        next_housekeeping = time.monotonic() + HOUSEKEEPING_EVERY
        while not self.stop_event.is_set():
            batch = self.batches.get(timeout=0.25)
            if self.status.connects != connects_seen:
                if connects_seen:
                    with self.lock:
                        self.state.open_gap(time.monotonic())
                connects_seen = self.status.connects
            if batch is not None:
                self.apply_batch(batch.kind, batch.items, batch.received_at)
            now = time.monotonic()
            if now >= next_housekeeping:
                next_housekeeping = now + HOUSEKEEPING_EVERY
                with self.lock:
                    self.state.housekeeping(now)

    def overflow_events(self) -> int:
        """Events in the messages the hand-over had to drop. The reader drops whole messages
        without decoding them (that is the point of dropping), and a prefork worker's
        task.multi message carries several events: estimate with the mean events per message
        applied so far (within 0.5% of the exact loss in bench/exporter_throughput.py)."""
        dropped = self.batches.dropped_messages
        if not dropped:
            return 0
        per_message = self.events_applied / self.messages_applied if self.messages_applied else 1
        return round(dropped * max(1.0, per_message))

    def apply_batch(self, kind: str, items: list, received_at: float) -> None:
        errors: list[DecodeError] = []
        if kind == RAW:
            events: list = []
            extend = events.extend
            for payload in items:
                try:
                    extend(decode(payload))
                except DecodeError as exc:
                    errors.append(exc)
        else:
            events = items
        self.messages_applied += len(items)
        self.events_applied += len(events)
        with self.lock:
            self.state.apply_all(events, received_at)
            for error in errors:
                self.state.count_decode_error(error.kind, error.detail)

    # ---- poller ------------------------------------------------------------------------------

    def _sent_at(self, task_id: str) -> float | None:
        record = self.state.tasks.get(task_id)
        return record.sent_ts if record is not None else None

    def _poll_loop(self) -> None:
        interval = self.settings.exporter_poll_interval
        failing = False
        while not self.stop_event.is_set():
            with self.lock:
                queues = self.state.known_queues() | set(self.settings.exporter_queues)
                now = time.monotonic()
                up_nodes = {
                    w.node for w in self.state.workers.values() if self.state.worker_up(w, now)
                }
            try:
                snapshot = self.poller.poll(queues, self._sent_at)
                self.snapshot = snapshot
                if failing:
                    log.info("the broker answers again")
                failing = False
                self.consumers = consumers_per_queue(self.worker_queues.update(up_nodes), up_nodes)
            except Exception as exc:  # any transport error: keep the last values, retry
                if not failing:
                    log.warning("cannot poll the broker's queues: %s; keeping the last values", exc)
                failing = True
                self.snapshot = dataclasses.replace(
                    self.snapshot, ok=False, error=f"broker poll failed: {exc}"
                )
            self.stop_event.wait(interval)

    # ---- serving -----------------------------------------------------------------------------

    def render(self, names: frozenset[str] | None = None) -> bytes:
        started = time.perf_counter()
        extras = Extras(
            status=self.status,
            snapshot=self.snapshot,
            consumers=self.consumers,
            overflow_dropped=self.overflow_events(),
            last_scrape_seconds=self.last_scrape_seconds,
            thresholds=self.thresholds,
        )
        with self.lock:
            lines = self.renderer.render(self.state, extras, time.monotonic(), time.time(), names)
        body = "".join(lines).encode()
        if names is None:  # the gauge tells what Prometheus's full scrape costs
            self.last_scrape_seconds = time.perf_counter() - started
        return body

    def health(self) -> tuple[bool, str]:
        problems = []
        if not self.status.connected:
            problems.append(f"event stream down: {self.status.last_error or 'not connected yet'}")
        if not self.snapshot.ok:
            problems.append(self.snapshot.error or "broker not answering")
        if problems:
            return False, "unhealthy: " + "; ".join(problems)
        return True, "ok"
