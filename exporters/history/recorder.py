"""The recorder process: event streams -> buffer -> writer -> database, plus retention and
metrics.

The events come through the same pipeline as the exporter's (exporters/stream/consumer.py), one
per Celery app followed (exporters/history/sources.py): a reader thread, and a consumer thread
that decodes and checks them and, as the app's source is its sink, stamps them with the app and
only queues them (it never waits on the database). The writer thread is the only one
that talks to the database (writes, migrations, pruning); the main thread waits for a stop
signal. Between them sits the bounded :class:`SpillingBuffer`.

Nothing stops the writer: a batch the database refuses is written event by event, and an
event refused alone goes to the quarantine files (exporters/history/quarantine.py), so a bad
batch is never replayed from the spool into a stop at the next start.
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
from exporters.history.merge import Limits
from exporters.history.metrics import RecorderMetrics
from exporters.history.outage import OutageLog
from exporters.history.quarantine import Quarantine
from exporters.history.retention import RetentionPolicy, prune
from exporters.history.settings import HistorySettings
from exporters.history.sources import AppSource, check_distinct_brokers
from exporters.history.spool_lock import SpoolLock
from exporters.history.writer import HistoryWriter, WriteResult
from exporters.stream.acks import Delivery
from exporters.stream.consumer import EventStream
from exporters.stream.health import Beat, Part
from fleetops.apps import APP_NAME
from fleetops.settings import from_settings

log = logging.getLogger(__name__)

# Longest single wait of the writer between two beats while it retries a database.
WRITER_WAIT_STEP = 1.0
# At most one log line this often for a loss that goes on: the counter says how much.
LOG_EVERY = 60.0
# PostgreSQL's "deadlock detected" and "could not serialize": the transaction was rolled back
# only because another one (a second recorder, retention, an operator) touched the same rows.
CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})
# Immediate retries of a batch that lost such a conflict, before it is treated as an outage.
CONFLICT_RETRIES = 5


def is_conflict(exc: BaseException) -> bool:
    """True when the database rolled the batch back for a concurrent transaction: writing it
    again at once is right (a batch is one transaction of idempotent upserts)."""
    original = getattr(exc, "orig", None)
    return getattr(original, "sqlstate", None) in CONFLICT_SQLSTATES


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
        metrics: RecorderMetrics | None = None,
        engine: Engine | None = None,
        drain_timeout: float = 10.0,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or RecorderMetrics()
        apps = settings.effective_apps
        check_distinct_brokers(apps)
        self.engine = engine or create_history_engine(settings.effective_history_database_url)
        self.quarantine = Quarantine(settings.effective_quarantine_dir)
        # Before the buffer: it replays what it finds in the spool, which must be ours alone.
        self.spool_lock = SpoolLock(settings.effective_spool_dir)
        self.buffer = SpillingBuffer(
            settings.history_buffer_events,
            settings.effective_spool_dir,
            settings.history_spool_max_bytes,
            on_drop=self._dropped,
            # On RabbitMQ a delivery is acknowledged once its events are committed, not before:
            # a recorder killed in between gets them again (docs/history.md).
            on_committed=_acknowledge,
        )
        self.sources = [
            AppSource(app, settings, self.buffer, self.metrics, self._dropped) for app in apps
        ]
        self.writer = HistoryWriter(
            self.engine,
            from_settings(Limits, settings, "history_"),
            # Events with no app are those a recorder from before several apps spooled: the
            # one app it followed.
            default_app=settings.app_name,
        )
        self.policy = from_settings(RetentionPolicy, settings, "history_")
        self._overflow_logged = -LOG_EVERY
        self._other_app_logged = -LOG_EVERY
        self.drain_timeout = drain_timeout
        self.stop_requested = threading.Event()
        self._source_stop = threading.Event()
        self._schema_ready = False
        self._next_prune = 0.0
        self._inflight = 0
        self.writer_beat = Beat()
        self._writer_thread: threading.Thread | None = None
        # Set when the writer ended on an error nobody caught: the process then exits non-zero.
        self.failed = False
        self._outage = OutageLog(describe(self.engine), settings.history_retry_max_seconds)
        self.metrics.spool_limit.set(settings.history_spool_max_bytes)
        # Read at scrape time: correct even while the writer is stuck retrying a batch.
        self.metrics.buffered.labels("memory").set_function(
            lambda: self.buffer.stats().in_memory + self._inflight
        )
        self.metrics.buffered.labels("disk").set_function(lambda: self.buffer.stats().on_disk)
        self.metrics.spool_bytes.set_function(lambda: self.buffer.stats().disk_bytes)
        self.metrics.database_up.set(0)
        self.metrics.watch_streams(
            {source.name: source.stream.rejections for source in self.sources}, self._app_parts
        )

    @property
    def stream(self) -> EventStream:
        """The first app's stream (the only one without FLEETOPS_APPS)."""
        return self.sources[0].stream

    # -- lifecycle -----------------------------------------------------------------------
    def run(self) -> None:
        """Record until :meth:`stop`; on return every event is in the database or on disk."""
        log.info("recorder: writing task history to %s", describe(self.engine))
        writer_thread = threading.Thread(target=self._run_writer, name="writer")
        self._writer_thread = writer_thread
        for source in self.sources:
            source.stream.start(self._source_stop)
        writer_thread.start()
        try:
            self.stop_requested.wait()
        finally:
            self._source_stop.set()
            self.stop_requested.set()
            for source in self.sources:
                source.stream.join(timeout=30)
            writer_thread.join()
            self.engine.dispose()
            self.spool_lock.release()
            log.info("recorder: stopped; %d events wait on disk", self.buffer.pending())

    def stop(self) -> None:
        self.stop_requested.set()

    # -- health --------------------------------------------------------------------------
    def _app_parts(self) -> list[tuple[Part, str]]:
        """Every part with its app: each source's reader and consumer, and the writer ("")."""
        # The writer's beat stays fresh while it retries an unavailable database (that is
        # FleetopsHistoryDatabaseDown's business); it goes stale only if a write hangs.
        writer = Part(
            "writer",
            self.writer_beat,
            self._writer_thread,
            stall_after=self.settings.history_stall_after,
        )
        parts = [(part, source.name) for source in self.sources for part in source.stream.parts()]
        return [*parts, (writer, "")]

    def parts(self) -> list[Part]:
        return [part for part, _ in self._app_parts()]

    def health(self) -> tuple[bool, str]:
        """Unhealthy (503) when a part is stalled or any app's stream is down, each named with
        its app, as the exporter answers: a monitor must not say healthy while an app's history
        is being lost. (Kubernetes probes another path, deploy/parts.py: a broker outage must
        not restart the recorder and interrupt the apps that work.)"""
        now = time.monotonic()
        found = []
        for part, app in self._app_parts():
            problem = part.problem(now)
            if problem is not None:
                found.append(f"app {app}: {problem}" if app else problem)
        for source in self.sources:
            status = source.stream.status
            if not status.connected:
                error = status.last_error or "not connected yet"
                found.append(f"app {source.name}: event stream down: {error}")
        if found:
            return False, "unhealthy: " + "; ".join(found)
        database = "up" if self._outage.started is None else "unavailable, buffering"
        return True, f"ok (database {database}, {self.backlog()} events waiting)"

    def _dropped(self, count: int, reason: str = "buffer_full", app: str = "") -> None:
        self.metrics.dropped.labels(reason).inc(count)
        if reason == "buffer_full":
            log.error(
                "recorder: buffer bound hit (%d bytes on disk): %d events dropped",
                self.settings.history_spool_max_bytes, count,
            )  # fmt: skip
        elif reason == "other_app" and time.monotonic() >= self._other_app_logged + LOG_EVERY:
            self._other_app_logged = time.monotonic()
            log.error(
                "recorder: %d events name a task id that another app's events already hold;"
                ' not stored (fleetops_history_events_dropped_total{reason="other_app"})',
                count,
            )
        elif reason == "overflow" and time.monotonic() >= self._overflow_logged + LOG_EVERY:
            self._overflow_logged = time.monotonic()
            log.error(
                "recorder: events of app %s arrive faster than it can check them; %d events"
                " dropped before they were read"
                ' (fleetops_history_events_dropped_total{reason="overflow"})',
                app, count,
            )  # fmt: skip

    # -- writer thread -------------------------------------------------------------------
    def backlog(self) -> int:
        """Events consumed but not yet committed: the buffer plus a batch being retried."""
        return self.buffer.pending() + self._inflight

    def _run_writer(self) -> None:
        try:
            self._write_loop()
        except BaseException:
            self.failed = True
            log.exception("recorder: the writer thread failed; stopping")
            self.stop()
            raise

    def _wait(self, seconds: float) -> None:
        """Wait, beating at least every WRITER_WAIT_STEP (health must not see a stall)."""
        deadline = time.monotonic() + seconds
        while not self.stop_requested.is_set():
            self.writer_beat.now()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.stop_requested.wait(min(remaining, WRITER_WAIT_STEP))

    def _write_loop(self) -> None:
        delay = self.settings.history_retry_initial_seconds
        batch: Batch | None = None
        deadline: float | None = None
        while True:
            self.writer_beat.now()
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
                if batch.segment is not None:
                    # A file is hostile input too: check what comes back from the spool.
                    batch.events = self.check_spooled(batch.events)
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
                    self._wait(delay)
                delay = min(delay * 2, self.settings.history_retry_max_seconds)
                continue
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

    def check_spooled(self, bodies: list[Any]) -> list[dict[str, Any]]:
        """Events read back from the disk spool, checked again as the stream checks them, each
        with the app it was spooled with. A line without an app was spooled by a recorder from
        before several apps: it is the one app that recorder followed (FLEETOPS_APP_NAME); a
        line whose app is not an app name is rejected and counted (reason ``bad_field``)."""
        by_app: dict[str, list[Any]] = {}
        default = self.settings.app_name
        first = self.sources[0].stream
        for body in bodies:
            app = body.get("app", default) if type(body) is dict else default
            if type(app) is not str or not APP_NAME.match(app):
                first.rejections.reject(
                    "bad_field", f"spooled event with an unusable app {app!r:.80}"
                )
                continue
            by_app.setdefault(app, []).append(body)
        streams = {source.name: source.stream for source in self.sources}
        checked: list[dict[str, Any]] = []
        for app, group in by_app.items():
            # An app no longer followed still owns what it spooled; its rejections count
            # under the first app's stream.
            events = streams.get(app, first).check_bodies(group)
            for event in events:
                event["app"] = app
            checked += events
        return checked

    def _write(self, batch: Batch) -> None:
        if not self._schema_ready:
            migrate.upgrade(self.engine)
            self._schema_ready = True
            log.info("recorder: schema at revision %s", migrate.head_revision())
        try:
            result = self._write_through_conflicts(batch.events)
        except SQLAlchemyError as exc:
            if is_unavailable(exc):
                raise
            self._isolate(batch, _reason(exc))
            return
        except Exception as exc:  # a bug in merging: never a reason to stop recording
            self._isolate(batch, f"{type(exc).__name__}: {exc}")
            return
        self._written(result)

    def _write_through_conflicts(self, events: list[Any]) -> WriteResult:
        """Write a batch, again at once if a concurrent transaction made the database roll it
        back; each such retry counted as write_errors{kind="conflict"}. Conflicts that go on
        raise: an OperationalError, so the caller backs off as for an outage."""
        attempt = 1
        while True:
            try:
                return self.writer.write(events)
            except SQLAlchemyError as exc:
                if not is_conflict(exc) or attempt >= CONFLICT_RETRIES:
                    raise
                self.metrics.write_errors.labels("conflict").inc()
                log.info("recorder: batch rolled back by a concurrent write (%s); writing it"
                         " again", _reason(exc))  # fmt: skip
                attempt += 1

    def _isolate(self, batch: Batch, reason: str) -> None:
        """A batch the database refuses (a value out of range, say): write it event by event
        so only the bad ones are set aside, each counted and kept in the quarantine."""
        self.metrics.write_errors.labels("rejected").inc()
        log.error("recorder: batch refused (%s); isolating the bad events", reason)
        for event in batch.events:
            self.writer_beat.now()
            try:
                result = self._write_through_conflicts([event])
            except SQLAlchemyError as exc:
                if is_unavailable(exc):
                    raise
                self._quarantine(event, _reason(exc))
                continue
            except Exception as exc:
                self._quarantine(event, f"{type(exc).__name__}: {exc}")
                continue
            self._written(result)

    def _quarantine(self, event: Any, reason: str) -> None:
        if self.quarantine.keep(event, reason):
            self.metrics.quarantined.inc()
            log.error("recorder: event %s set aside in the quarantine: %s", _summary(event), reason)
        else:
            self._dropped(1, "quarantine_full")

    def _written(self, result: WriteResult) -> None:
        self.metrics.written.inc(result.events)
        if result.malformed:
            self.metrics.malformed.inc(result.malformed)
        if result.foreign:
            # Another app's events for a task id already stored under an app: never merged
            # (docs/history.md, "Several apps").
            self._dropped(result.foreign, "other_app")
        self.metrics.database_up.set(1)
        self.metrics.last_write.set(time.time())

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now < self._next_prune or not self._schema_ready:
            return
        self._next_prune = now + self.settings.history_prune_interval
        try:
            result = prune(self.engine, self.policy)
        except Exception as exc:  # retention is best effort: the next interval tries again
            log.warning("recorder: retention skipped (%s)", _reason(exc))
            return
        if result.skipped:
            log.debug("recorder: retention skipped, another recorder is pruning")
            return
        self.metrics.pruned.labels("age").inc(result.by_age)
        self.metrics.pruned.labels("count").inc(result.by_count)
        if result.total or result.workers or result.runs:
            log.info(
                "recorder: retention removed %d tasks (%d by age, %d by count), %d runs,"
                " %d workers",
                result.total, result.by_age, result.by_count, result.runs, result.workers,
            )  # fmt: skip


def _acknowledge(mark: tuple[AppSource, Delivery]) -> None:
    """The buffer hands back a source's last delivery whose events are all committed."""
    source, delivery = mark
    source.acknowledge(delivery)


def _reason(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()
    return f"{type(original).__name__}: {text[0][:300] if text else ''}"


def _summary(event: Any) -> str:
    if type(event) is not dict:
        return type(event).__name__
    return f"{event.get('type')!s:.40} {event.get('uuid') or event.get('hostname')!s:.80}"
