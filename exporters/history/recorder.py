"""The recorder process: source -> buffer -> writer -> database, plus retention and metrics.

Three threads with one job each: the source thread only decodes and queues events (it never
waits on the database), the writer thread is the only one that talks to the database (writes,
migrations, pruning), and the main thread waits for a stop signal. Between them sits the
bounded :class:`SpillingBuffer`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

from exporters.history import migrate
from exporters.history.buffer import Batch, SpillingBuffer
from exporters.history.database import create_history_engine, describe
from exporters.history.merge import TASK_EVENTS, WORKER_EVENTS, Limits
from exporters.history.metrics import RecorderMetrics
from exporters.history.outage import OutageLog
from exporters.history.retention import RetentionPolicy, prune
from exporters.history.settings import HistorySettings
from exporters.history.source import CeleryEventSource, EventSource
from exporters.history.writer import HistoryWriter

log = logging.getLogger(__name__)

KNOWN_TYPES = frozenset(TASK_EVENTS) | frozenset(WORKER_EVENTS)


def is_unavailable(exc: BaseException) -> bool:
    """True when the database cannot be reached (retry later), False for a bad row."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OSError)


class Recorder:
    def __init__(
        self,
        settings: HistorySettings,
        *,
        source: EventSource | None = None,
        metrics: RecorderMetrics | None = None,
        engine: Engine | None = None,
        drain_timeout: float = 10.0,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or RecorderMetrics()
        self.engine = engine or create_history_engine(settings.effective_history_database_url)
        self.source = source or CeleryEventSource(
            settings.broker_url,
            queue_name=settings.history_queue_name,
            queue_max_length=settings.history_queue_max_length,
            metrics=self.metrics,
            retry_initial=settings.history_retry_initial_seconds,
            retry_max=settings.history_retry_max_seconds,
        )
        self.buffer = SpillingBuffer(
            settings.history_buffer_events,
            settings.effective_spool_dir,
            settings.history_spool_max_bytes,
            on_drop=self._dropped,
        )
        self.writer = HistoryWriter(
            self.engine,
            Limits(
                record_args=settings.history_record_args,
                args_max_chars=settings.history_args_max_chars,
                traceback_max_chars=settings.history_traceback_max_chars,
            ),
        )
        self.policy = RetentionPolicy(
            max_age_days=settings.history_retention_days,
            failed_max_age_days=settings.history_failed_retention_days,
            max_rows=settings.history_max_rows,
            max_failed_rows=settings.history_max_failed_rows,
        )
        self.drain_timeout = drain_timeout
        self.stop_requested = threading.Event()
        self._source_stop = threading.Event()
        self._schema_ready = False
        self._next_prune = 0.0
        self._event_counters: dict[str, Any] = {}
        self._inflight = 0
        self._outage = OutageLog(describe(self.engine), settings.history_retry_max_seconds)
        self.metrics.spool_limit.set(settings.history_spool_max_bytes)
        # Read at scrape time: correct even while the writer is stuck retrying a batch.
        self.metrics.buffered.labels("memory").set_function(
            lambda: self.buffer.stats().in_memory + self._inflight
        )
        self.metrics.buffered.labels("disk").set_function(lambda: self.buffer.stats().on_disk)
        self.metrics.spool_bytes.set_function(lambda: self.buffer.stats().disk_bytes)
        self.metrics.database_up.set(0)

    # -- lifecycle -----------------------------------------------------------------------
    def run(self) -> None:
        """Record until :meth:`stop`; on return every event is in the database or on disk."""
        log.info("recorder: writing task history to %s", describe(self.engine))
        source_thread = threading.Thread(target=self._run_source, name="history-source")
        writer_thread = threading.Thread(target=self._run_writer, name="history-writer")
        source_thread.start()
        writer_thread.start()
        try:
            self.stop_requested.wait()
        finally:
            self._source_stop.set()
            self.stop_requested.set()
            source_thread.join()
            writer_thread.join()
            self.engine.dispose()
            log.info("recorder: stopped; %d events wait on disk", self.buffer.pending())

    def stop(self) -> None:
        self.stop_requested.set()

    # -- source thread -------------------------------------------------------------------
    def _run_source(self) -> None:
        try:
            self.source.run(self.emit, self._source_stop)
        except Exception:
            log.exception("recorder: the event source failed; stopping")
            self.stop()

    def emit(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        key = kind if kind in KNOWN_TYPES else "other"
        counter = self._event_counters.get(key)
        if counter is None:
            counter = self._event_counters[key] = self.metrics.events.labels(key)
        counter.inc()
        self.buffer.put(event)

    def _dropped(self, count: int) -> None:
        self.metrics.dropped.labels("buffer_full").inc(count)
        log.error(
            "recorder: buffer bound hit (%d bytes on disk): %d events dropped",
            self.settings.history_spool_max_bytes, count,
        )  # fmt: skip

    # -- writer thread -------------------------------------------------------------------
    def backlog(self) -> int:
        """Events consumed but not yet committed: the buffer plus a batch being retried."""
        return self.buffer.pending() + self._inflight

    def _run_writer(self) -> None:
        delay = self.settings.history_retry_initial_seconds
        batch: Batch | None = None
        deadline: float | None = None
        while True:
            if self.stop_requested.is_set() and deadline is None:
                deadline = time.monotonic() + self.drain_timeout
            if batch is None:
                if deadline is not None and (
                    self.buffer.pending() == 0 or time.monotonic() > deadline
                ):
                    break
                wait = 0.05 if deadline is not None else self.settings.history_flush_interval
                batch = self.buffer.take(self.settings.history_batch_size, wait)
                if batch is None:
                    self._outage.caught_up()
                    self._maybe_prune()
                    continue
                # A batch read from disk is still counted there until its segment is committed.
                self._inflight = len(batch.events) if batch.segment is None else 0
            try:
                self._write(batch)
            except SQLAlchemyError as exc:
                # Unreachable, or refusing even the schema (permissions): keep the batch, keep
                # buffering, try again later. Nothing is dropped here.
                self.metrics.database_up.set(0)
                kind = "unavailable" if is_unavailable(exc) else "rejected"
                self.metrics.write_errors.labels(kind).inc()
                self._outage.failed(kind, _reason(exc), self.backlog(), delay)
                if deadline is not None:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(min(delay, 0.5))
                else:
                    self.stop_requested.wait(delay)
                delay = min(delay * 2, self.settings.history_retry_max_seconds)
                continue
            except Exception:
                log.exception("recorder: writer failed; keeping the batch on disk and stopping")
                self.stop()
                break
            self.buffer.commit(batch)
            self._inflight = 0
            self._outage.written(len(batch.events), self.backlog())
            batch = None
            delay = self.settings.history_retry_initial_seconds
        if batch is not None and batch.segment is None:
            # Taken from memory and not written: back to disk. A batch read from a segment
            # needs nothing: the segment stays until committed.
            self.buffer.spill(batch.events)
            self._inflight = 0
        self.buffer.close()

    def _write(self, batch: Batch) -> None:
        if not self._schema_ready:
            migrate.upgrade(self.engine)
            self._schema_ready = True
            log.info("recorder: schema at revision %s", migrate.head_revision())
        try:
            result = self.writer.write(batch.events)
        except SQLAlchemyError as exc:
            if is_unavailable(exc):
                raise
            # A row the database refuses (a value out of range, say): write the batch event by
            # event so only the bad ones are skipped, each with its reason in the log.
            self.metrics.write_errors.labels("rejected").inc()
            log.error("recorder: batch refused (%s); isolating the bad events", _reason(exc))
            self._write_one_by_one(batch)
            return
        self._written(result.events, result.malformed)

    def _write_one_by_one(self, batch: Batch) -> None:
        for event in batch.events:
            try:
                result = self.writer.write([event])
            except SQLAlchemyError as exc:
                if is_unavailable(exc):
                    raise
                self.metrics.malformed.inc()
                log.error("recorder: skipped event %r: %s", _summary(event), _reason(exc))
                continue
            self._written(result.events, result.malformed)

    def _written(self, events: int, malformed: int) -> None:
        self.metrics.written.inc(events)
        if malformed:
            self.metrics.malformed.inc(malformed)
        self.metrics.database_up.set(1)
        self.metrics.last_write.set(time.time())

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now < self._next_prune or not self._schema_ready:
            return
        self._next_prune = now + self.settings.history_prune_interval
        try:
            result = prune(self.engine, self.policy)
        except SQLAlchemyError as exc:
            log.warning("recorder: retention skipped (%s)", _reason(exc))
            return
        self.metrics.pruned.labels("age").inc(result.by_age)
        self.metrics.pruned.labels("count").inc(result.by_count)
        if result.total or result.workers:
            log.info(
                "recorder: retention removed %d tasks (%d by age, %d by count), %d workers",
                result.total, result.by_age, result.by_count, result.workers,
            )  # fmt: skip


def _reason(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    return f"{type(original).__name__}: {str(original).strip().splitlines()[0][:300]}"


def _summary(event: dict[str, Any]) -> str:
    return f"{event.get('type')} {event.get('uuid') or event.get('hostname')}"
