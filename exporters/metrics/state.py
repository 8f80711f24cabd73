"""Everything the event stream taught us, as plain numbers; applied by one thread only.

Series are small objects keyed by their labels, created on first use within a cap
(``max_series``). Task records (what ``task-sent`` said about a task, needed to label and time
the later events of that task) live in a bounded table, so memory stays flat whatever the
stream does. Every oddity (duplicate, out of order, clock skew, unknown task) is counted in
``anomalies`` and logged once per kind; none of them can make a counter wrong.

Events arrive checked (exporters/stream/events.py): every field used here has its type and
bounds, so a handler never parses; an unexpected error in one is caught for that event and
counted, never allowed to stop the applier. Each label (task name, queue, hostname, exception)
is admitted through a cap of its own; past it, new values are counted and reported under
``OVERFLOW``, so a stream of random names cannot grow the series without bound.

With worker groups (exporters/metrics/worker_groups.py) the task series count under the group
of the worker's hostname, so autoscaled pods do not grow them; everything kept per worker (its
gauges, its running tasks, its faults) stays under the hostname itself, and a worker that
stopped cleanly is forgotten once the worker timeout has passed.

A worker can report ``task-received`` before the producer's ``task-sent`` arrives (the producer
publishes the task first and the event second, and may be descheduled in between). Only
``task-sent`` names the queue, so such a task's first events wait, parked, for up to
``reorder_window`` seconds instead of being counted under ``queue_name="unknown"``.

Task faults (fleetops/task_faults.py has the rules, docs/exporter.md the behaviour): each task
started is indexed under the worker that runs it, with the monotonic time its start was
applied, so runtimes are measured on this exporter's clock whatever the workers' clocks say, and
what runs on a worker is found without walking the task table. A worker that goes down
(silent past ``worker_timeout`` while the stream is heard, or online again after the start: a
restart) orphans what it ran; one that sent worker-offline drains, its tasks orphaned only past
their bound (task_faults.drained_orphan); the same process heard again after a silence takes its
orphans back. An orphan ends redelivered (started again) or lost (its redelivery window
passed). A second start within one attempt is a twice-run; an ETA further than the visibility
timeout from the receipt is the trap that causes one. Stuck tasks are found at scrape time from
the per-worker index (running tasks are few: the pools' sizes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice
from operator import attrgetter
from typing import TypeVar

from exporters.metrics.histogram import Histogram
from exporters.metrics.rates import MinuteRate
from exporters.metrics.settings import ExporterSettings
from exporters.metrics.worker_groups import WorkerGroups
from exporters.stream.events import TASK_TYPES as _TASK_KINDS
from exporters.stream.events import UNKNOWN_EXCEPTION
from fleetops import task_faults
from fleetops.settings import field_default

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
# The label value new names are reported under once a label's cap is reached.
OVERFLOW = "__overflow__"
# A fleet whose producers send no task-sent events would park every task for nothing: park only
# while task-sent events have been seen this recently, or, before any has been seen, until a
# parked task's window passes without its task-sent (then the producers do not send them).
SENT_EVENTS_FRESH_FOR = 300.0
# Series each tracked object renders (a histogram counts once): used by the series cap.
TASK_SERIES_WEIGHT = 9  # 8 counters + celery_task_runtime
# runtime succeeded/failed, queue wait, latency; the 6 task-fault series rendered at 0 for
# every (name, queue_name) (repeated runs, orphans x 2 outcomes, ETA trap, orphaned, stuck); the
# 2 while they apply (longest running, farthest ETA).
TASK_QUEUE_SERIES_WEIGHT = 12
WORKER_SERIES_WEIGHT = 8
BEAT_SERIES_WEIGHT = 4  # last run, interval, next run, entry info
# Running tasks indexed per worker: a pool runs a few dozen; past this many the terminal events
# of the oldest were lost (an overflow), so they are forgotten, and counted.
MAX_RUNNING_PER_WORKER = 10_000
# Tasks waiting for their ETA, for the farthest-ETA gauge (walked per scrape).
MAX_WAITING_ETA = 50_000
# A task whose ETA passed this long ago without its start (events lost) no longer waits.
ETA_START_GRACE = 300.0
# Earlier starts of one attempt remembered to tell a duplicate event from another run.
MAX_EARLIER_STARTS = 8

# The timestamp a task record keeps of each event kind that may arrive twice for one task
# (None until it has): the same kind with the same timestamp again is a duplicate.
_RUN_KINDS = frozenset(("task-received", "task-started"))
_STAMP_OF = {
    "task-sent": attrgetter("sent_ts"),
    "task-received": attrgetter("received_ts"),
    "task-started": attrgetter("started_ts"),
    "task-retried": attrgetter("retried_ts"),
}

K = TypeVar("K", bound=tuple)
H = TypeVar("H")


class TaskSeries:
    """Counters of one (name, hostname, queue_name): the peer-compatible label set."""

    __slots__ = (
        "failed",
        "received",
        "rejected",
        "retried",
        "revoked",
        "runtime",
        "sent",
        "started",
        "succeeded",
    )

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.sent = self.received = self.started = self.succeeded = 0
        self.retried = self.rejected = self.revoked = 0
        self.failed: dict[str, int] = {}
        self.runtime = Histogram(bounds)


class TaskQueueSeries:
    """Latency histograms and task-fault counters of one (name, queue_name), without the
    worker. The task-fault series are rendered, at 0 too, for every one of these."""

    __slots__ = (
        "eta_beyond_visibility",
        "latency",
        "orphaned",
        "orphans_lost",
        "orphans_redelivered",
        "runs_repeated",
        "runtime_failed",
        "runtime_succeeded",
        "wait",
    )

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.runtime_succeeded = Histogram(bounds)
        self.runtime_failed = Histogram(bounds)
        self.wait = Histogram(bounds)
        self.latency = Histogram(bounds)
        self.runs_repeated = self.orphans_redelivered = self.orphans_lost = 0
        self.eta_beyond_visibility = 0
        self.orphaned = 0  # a gauge: orphans waiting for their redelivery now


class RunFaults:
    """What went wrong with a task's runs; rare, so a record has none until it is needed."""

    __slots__ = (
        "attempt",
        "earlier_starts",
        "eta_counted",
        "orphaned_as",
        "orphaned_at",
        "replaced",
        "silent_on",
        "superseded_on",
        "window",
    )

    def __init__(self) -> None:
        # Timestamps of the starts of this attempt before the latest (a duplicate is not a run).
        self.earlier_starts: tuple[float, ...] = ()
        # (kind, timestamp) of the receipts and starts of earlier attempts, which a retry
        # replaced: the same event again is still a duplicate.
        self.replaced: tuple[tuple[str, float | None], ...] = ()
        self.eta_counted = False  # the ETA trap is counted once per attempt
        # The attempt (the ``retries`` of task-received) the task is at: a receipt of a higher
        # one is a new attempt even before the old run's task-retried arrives.
        self.attempt = 0
        # The worker (or "*": not known) whose task-retried of the attempt a receipt replaced
        # is still to come: that late event must not end the new attempt.
        self.superseded_on: str | None = None
        self.orphaned_at: float | None = None  # monotonic; set while it is an orphan
        # The (name, queue) whose gauge counts the orphan: the record's may change meanwhile.
        self.orphaned_as: tuple[str, str] = (UNKNOWN, UNKNOWN)
        self.window = 0.0  # seconds its redelivery may take
        # The worker whose silence orphaned it: the same process heard again takes it back.
        self.silent_on: str | None = None


class TaskRecord:
    """What is known about one task in flight."""

    __slots__ = (
        "faults",
        "name",
        "queue",
        "received_ts",
        "retried_ts",
        "sent_ts",
        "started_at",
        "started_ts",
        "worker",
    )

    def __init__(self, name: str, queue: str) -> None:
        self.name = name
        self.queue = queue
        self.sent_ts: float | None = None
        self.received_ts: float | None = None
        self.started_ts: float | None = None
        self.retried_ts: float | None = None
        # While it runs: the worker (hostname label) and the monotonic time the start was applied.
        self.worker: str | None = None
        self.started_at = 0.0
        self.faults: RunFaults | None = None


@dataclass
class WorkerSeries:
    node: str  # the worker's own node name, e.g. celery@host (used to ask it for its queues)
    last_seen: float  # monotonic time we last heard from it
    offline: bool = False  # sent worker-offline (a clean stop); any later worker event clears it
    active: int = 0
    processed: int = 0
    pool_size: int | None = None
    rss_bytes: int | None = None
    memory_limit_bytes: int | None = None
    memory_percent: float | None = None
    pid: int | None = None  # of its main process: a restart changes it (outside containers)
    # Its silence orphaned tasks that the same process, heard again, takes back.
    silent_orphans: bool = False
    # Its reliability settings, from its worker-telemetry (None or empty until announced).
    visibility_timeout: float | None = None
    acks_late: bool | None = None
    time_limits: dict[str, float] = field(default_factory=dict)


@dataclass
class BeatSeries:
    """One entry of Beat's schedule, from its announcements (beat-schedule) and runs
    (beat-sent). Times are epoch seconds from Beat's clock, checked against ours."""

    last_run: float | None = None  # None until Beat has run it
    interval: float | None = None
    next_run: float | None = None  # the next run Beat expects
    task: str | None = None
    # Monotonic time since which complete announcements no longer list it (left the schedule).
    missing_since: float | None = None


@dataclass
class Limits:
    # A limit that is also a setting (FLEETOPS_EXPORTER_*) takes ExporterSettings' default, so
    # Limits() as the tests build it is what ships; finished_memory and max_parked are no
    # settings and are written here only.
    max_series: int = field_default(ExporterSettings, "exporter_max_series")
    max_tasks: int = field_default(ExporterSettings, "exporter_max_tasks")
    finished_memory: int = 50_000
    worker_timeout: float = field_default(ExporterSettings, "exporter_worker_timeout")
    purge_offline_after: float = field_default(ExporterSettings, "exporter_purge_offline_after")
    reorder_window: float = field_default(ExporterSettings, "exporter_reorder_window")
    max_parked: int = 50_000
    max_queues: int = field_default(ExporterSettings, "exporter_max_queues")
    max_task_names: int = field_default(ExporterSettings, "exporter_max_task_names")
    max_hostnames: int = field_default(ExporterSettings, "exporter_max_hostnames")
    max_exceptions: int = field_default(ExporterSettings, "exporter_max_exceptions")
    visibility_timeout: float | None = field_default(
        ExporterSettings, "exporter_visibility_timeout"
    )
    stuck_after: float = field_default(ExporterSettings, "exporter_stuck_after")
    stuck_bounds: dict[str, float] = field(
        default_factory=lambda: field_default(ExporterSettings, "exporter_stuck_bounds")
    )
    # Patterns mapping a worker hostname to its group for the task series (empty: none).
    worker_groups: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: ExporterSettings) -> Limits:
        """The limits the settings give: one place, whichever part builds a FleetState."""
        return cls(
            max_series=settings.exporter_max_series,
            max_tasks=settings.exporter_max_tasks,
            worker_timeout=settings.exporter_worker_timeout,
            purge_offline_after=settings.exporter_purge_offline_after,
            reorder_window=settings.exporter_reorder_window,
            max_queues=settings.exporter_max_queues,
            max_task_names=settings.exporter_max_task_names,
            max_hostnames=settings.exporter_max_hostnames,
            max_exceptions=settings.exporter_max_exceptions,
            visibility_timeout=settings.exporter_visibility_timeout,
            stuck_after=settings.exporter_stuck_after,
            stuck_bounds=dict(settings.exporter_stuck_bounds),
            worker_groups=tuple(settings.exporter_worker_groups),
        )


class LabelValues:
    """The distinct values one label may take: the first ``cap`` seen, then ``OVERFLOW``."""

    __slots__ = ("cap", "overflowed", "seen")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.seen: set[str] = {UNKNOWN, OVERFLOW}
        self.overflowed = 0

    def admit(self, value: str) -> str:
        if value in self.seen:
            return value
        if len(self.seen) - 2 < self.cap:
            self.seen.add(value)
            return value
        self.overflowed += 1
        return OVERFLOW

    def forget(self, value: str) -> None:
        if value != UNKNOWN and value != OVERFLOW:
            self.seen.discard(value)

    def __len__(self) -> int:
        return len(self.seen) - 2


@dataclass
class FleetState:
    bounds: tuple[float, ...]
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        self.task_series: dict[tuple[str, str, str], TaskSeries] = {}
        self.task_queue_series: dict[tuple[str, str], TaskQueueSeries] = {}
        self.workers: dict[str, WorkerSeries] = {}
        self.beat: dict[str, BeatSeries] = {}
        self.tasks: dict[str, TaskRecord] = {}
        self.finished: dict[str, tuple[str, float | None, TaskRecord]] = {}
        self.arrivals: dict[str, MinuteRate] = {}
        self.completions: dict[str, MinuteRate] = {}
        self.events_by_type: dict[str, int] = {}
        # Events a handler failed on (a bug, not bad input: the checks come first).
        self.internal_errors = 0
        self.labels: dict[str, LabelValues] = {
            "queue_name": LabelValues(self.limits.max_queues),
            "name": LabelValues(self.limits.max_task_names),
            "hostname": LabelValues(self.limits.max_hostnames),
            "exception": LabelValues(self.limits.max_exceptions),
        }
        self._queues = self.labels["queue_name"].admit
        self._names = self.labels["name"].admit
        self._hosts = self.labels["hostname"].admit
        self._exceptions = self.labels["exception"].admit
        # Worker groups: the task series count under the group of a worker's hostname; the
        # per-worker state (gauges, running tasks) stays under the hostname itself.
        self.worker_groups = (
            WorkerGroups(self.limits.worker_groups) if self.limits.worker_groups else None
        )
        self._task_hosts = self._hosts if self.worker_groups is None else self._grouped_host
        # The hostname labels of task series that count other workers' tasks (_new_task_series).
        self.shared_task_hosts: set[str] = set()
        self.anomalies: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.series_count = 0
        self.series_limit_hits = 0
        self.last_event_ts: float | None = None
        self.last_clock: dict[str, int] = {}
        # uuid -> [monotonic time parked, events...]: tasks whose task-sent has not arrived yet.
        self.parked: dict[str, list] = {}
        self.last_sent_at: float | None = None
        # Whether the producers send task-sent is unknown until one arrives or a parked task's
        # window passes without it: until then the first tasks wait too, so the race of a
        # worker's task-received against its producer's task-sent is also won at start.
        self.sent_events_unknown = True
        self._logged_kinds: set[str] = set()
        # Task faults: hostname label -> {uuid: record} of the tasks running there; orphans
        # waiting for their redelivery (oldest first); tasks waiting for their ETA.
        self.running: dict[str, dict[str, TaskRecord]] = {}
        self.orphans: dict[str, TaskRecord] = {}
        self.waiting_eta: dict[str, tuple[TaskRecord, float, float]] = {}  # record, ahead, due
        # In force for the fleet: the setting, else the smallest a live worker announced; any
        # live worker with acks_late; the largest time limit a live worker announced per task.
        self.visibility_timeout: float | None = self.limits.visibility_timeout
        self.acks_late = False
        self.time_limits: dict[str, float] = {}
        self._limit_tables: dict[frozenset, dict[str, float]] = {}
        self._handlers = {
            "task-sent": self._task_sent,
            "task-received": self._task_received,
            "task-started": self._task_started,
            "task-succeeded": self._task_succeeded,
            "task-failed": self._task_failed,
            "task-retried": self._task_retried,
            "task-rejected": self._task_ended,
            "task-revoked": self._task_ended,
            "worker-heartbeat": self._worker_heartbeat,
            "worker-online": self._worker_online,
            "worker-offline": self._worker_offline,
            "worker-telemetry": self._worker_telemetry,
            "beat-sent": self._beat_sent,
            "beat-schedule": self._beat_schedule,
        }
        # Whether the event stream is connected (the app says so before each housekeeping), and
        # the monotonic time since when this exporter has heard it without a break.
        self.stream_connected = True
        self.hearing_since = float("-inf")
        self._gap_until: float | None = None
        self._gap_first_clock: dict[str, int] = {}
        self._gap_last_clock: dict[str, int] = {}

    # ---- the hot path ------------------------------------------------------------------------

    def apply_all(self, events: Iterable[dict], now: float) -> None:
        """Apply events received at monotonic time ``now``."""
        by_type = self.events_by_type
        handlers = self._handlers
        last_clock = self.last_clock
        parked = self.parked
        sent_at = self.last_sent_at
        reorders = self.limits.reorder_window > 0
        if sent_at is None:
            park_new = reorders and self.sent_events_unknown
        else:
            park_new = reorders and now - sent_at < SENT_EVENTS_FRESH_FOR
        newest = self.last_event_ts or 0.0
        for event in events:
            # Checked events (exporters/stream/events.py): type, hostname, timestamp and, for
            # task events, uuid are always there and of the right type.
            try:
                kind = event["type"]
                handler = handlers.get(kind)
                if handler is None:
                    continue
                by_type[kind] = by_type.get(kind, 0) + 1
                ts = event["timestamp"]
                if ts > newest:
                    newest = ts
                clock = event["clock"]
                if clock is not None:
                    sender = event["hostname"]
                    if self._gap_until is not None:
                        self._gap_observe(sender, clock, now)
                    last_clock[sender] = clock
                if kind == "task-received" or kind == "task-started":
                    uuid = event["uuid"]
                    waiting = parked.get(uuid) if parked else None
                    if waiting is not None:
                        waiting.append(event)
                        continue
                    if park_new and uuid not in self.tasks and uuid not in self.finished:
                        self._park(uuid, event, now)
                        continue
                elif parked and kind != "task-sent" and kind in _TASK_KINDS:
                    waiting = parked.get(event["uuid"])
                    if waiting is not None:
                        waiting.append(event)
                        continue
                handler(event, now)
                if kind == "task-sent":
                    self.last_sent_at = now
                    park_new = reorders
                    if parked:
                        waiting = parked.pop(event["uuid"], None)
                        if waiting is not None:
                            self._replay(waiting, now)
            except Exception as exc:  # a bug met by one event: count it, keep applying
                self.internal_error(event, exc)
        self.last_event_ts = newest or None
        if len(last_clock) > 50_000:
            last_clock.clear()

    def _park(self, uuid: str, event: dict, now: float) -> None:
        self.parked[uuid] = [now, event]
        if len(self.parked) > self.limits.max_parked:
            oldest = next(iter(self.parked))
            self._replay(self.parked.pop(oldest), now)

    def _replay(self, waiting: list, now: float) -> None:
        for event in waiting[1:]:
            self._dispatch(event, now)

    def _dispatch(self, event: dict, now: float) -> None:
        try:
            self._handlers[event["type"]](event, now)
        except Exception as exc:
            self.internal_error(event, exc)

    def internal_error(self, event: object, exc: Exception) -> None:
        self.internal_errors += 1
        kind = event.get("type") if type(event) is dict else type(event).__name__
        self._log_once(f"internal:{type(exc).__name__}", f"{kind} event not applied: {exc!r}")

    def release_parked(self, now: float) -> None:
        """Apply, as they are, the events of tasks whose task-sent did not come in time."""
        window = self.limits.reorder_window
        due = []
        for uuid, waiting in self.parked.items():
            if now - waiting[0] < window:
                break  # parked in arrival order: the rest are younger
            due.append(uuid)
        if due and self.last_sent_at is None:
            self.sent_events_unknown = False  # a window passed and no task-sent came at all
        for uuid in due:
            self._replay(self.parked.pop(uuid), now)

    def _grouped_host(self, host: str) -> str:
        """The hostname label of a task series: the worker's group, admitted under the cap."""
        return self._hosts(self.worker_groups.group_of(host))  # type: ignore[union-attr]

    def worker_group(self, host: str) -> str | None:
        """The group of a worker's hostname label; None without worker groups."""
        groups = self.worker_groups
        return None if groups is None else groups.group_of(host)

    def _task_series_of(self, record: TaskRecord, event: dict) -> TaskSeries | None:
        """The (name, hostname, queue_name) series a task event counts in."""
        key = (record.name, self._task_hosts(event["host"]), record.queue)
        # The lookup stays inline: it is the hot path, creation is not.
        series = self.task_series.get(key)
        if series is None:
            return self._new_task_series(key, event["host"])
        return series

    def _new_task_series(self, key: tuple[str, str, str], host: str) -> TaskSeries | None:
        series = self._new_series(self.task_series, key, TASK_SERIES_WEIGHT, TaskSeries)
        if series is not None and key[1] != host and self.worker_groups is not None:
            # A label the series hold for others than a worker of that name (a group, or the
            # overflow label): purging such a worker must leave them. Bounded as the task
            # series are, and kept as they are (purge_worker never drops them).
            self.shared_task_hosts.add(key[1])
        return series

    def _task_queue_key(self, name: str, queue: str) -> TaskQueueSeries | None:
        key = (name, queue)
        series = self.task_queue_series.get(key)
        if series is None:
            return self._new_series(
                self.task_queue_series, key, TASK_QUEUE_SERIES_WEIGHT, TaskQueueSeries
            )
        return series

    def _new_series(
        self, table: dict[K, H], key: K, weight: int, make: Callable[[tuple[float, ...]], H]
    ) -> H | None:
        """A new series of histograms under ``key``; None when the series cap has no room."""
        if not self._admit(weight):
            return None
        series = table[key] = make(self.bounds)
        return series

    def _record(self, event: dict, kind: str) -> TaskRecord | None:
        """The task's record; None when the event repeats one already applied to the task, in
        flight or finished."""
        uuid = event["uuid"]
        record = seen = self.tasks.get(uuid)
        if seen is None:
            done = self.finished.get(uuid)
            seen = None if done is None else done[2]
        if seen is not None and (
            _STAMP_OF[kind](seen) == event["timestamp"]
            or (seen.faults is not None and _repeats(seen.faults, kind, event["timestamp"]))
        ):
            self.anomaly("duplicate", f"the same {kind} event twice")
            return None
        if record is None and seen is not None and kind in _RUN_KINDS:
            # Finished, and received or started again: a copy of its message was handed out
            # again (the visibility-timeout trap, or a redelivery that came after all). The run
            # keeps the task's name and queue and its earlier start, so it counts as run twice.
            record = self.tasks[uuid] = seen
        elif record is None:
            name = event.get("name")
            if kind != "task-sent" and kind != "task-received":
                self.anomaly("unknown_task", f"{kind} for a task never seen sent or received")
            record = TaskRecord(UNKNOWN if name is None else self._names(name), UNKNOWN)
            self.tasks[uuid] = record
            if len(self.tasks) > self.limits.max_tasks:
                self._evict_tasks()
        return record

    def _task_sent(self, event: dict, now: float) -> None:
        record = self._record(event, "task-sent")
        if record is None:
            return
        ts = event["timestamp"]
        name = event.get("name")
        if name is not None and name != record.name:
            record.name = self._names(name)
        queue = event.get("queue")
        if queue is not None:
            if record.received_ts is not None and record.queue == UNKNOWN:
                self.anomaly("out_of_order", "task-sent arrived after the task was received")
            if queue != record.queue:
                record.queue = self._queues(queue)
        # A retry sends the task again: keep the first send, latency is end to end.
        if record.sent_ts is None:
            record.sent_ts = ts
        record.started_ts = None
        series = self._task_series_of(record, event)
        if series is not None:
            series.sent += 1
        _count_in(self.arrivals, record.queue, now)

    def _task_received(self, event: dict, now: float) -> None:
        record = self._record(event, "task-received")
        if record is None:
            return
        retries = event.get("retries")
        if retries and retries > (0 if record.faults is None else record.faults.attempt):
            # Task.retry() publishes the retry before its worker sends task-retried: with a
            # short countdown the retry is received (and started) first. A new attempt.
            old_run = None if record.started_ts is None else (record.worker or "*")
            faults = self._new_attempt(event["uuid"], record)
            faults.attempt = retries
            faults.superseded_on = old_run
        record.received_ts = event["timestamp"]
        name = event.get("name")
        if name is not None and record.name == UNKNOWN:
            record.name = self._names(name)
        series = self._task_series_of(record, event)
        if series is not None:
            series.received += 1
        eta = event.get("eta_at")
        if eta is not None:
            self._received_with_eta(event["uuid"], record, eta, record.received_ts, now)

    def _task_started(self, event: dict, now: float) -> None:
        record = self._record(event, "task-started")
        if record is None:
            return
        uuid = event["uuid"]
        ts = event["timestamp"]
        if record.started_ts is not None:
            self._started_again(uuid, record)
        record.started_ts = ts
        # _task_series_of inline: the worker's label is needed twice here.
        host = self._hosts(event["host"])
        key = (
            record.name,
            host if self.worker_groups is None else self._grouped_host(event["host"]),
            record.queue,
        )
        series = self.task_series.get(key)
        if series is None:
            series = self._new_task_series(key, event["host"])
        if series is not None:
            series.started += 1
        # Always, so that the task-fault series of a task started are there, at 0, before a
        # fault counts in them.
        per_queue = self._task_queue_key(record.name, record.queue)
        if per_queue is not None and record.sent_ts is not None:
            per_queue.wait.observe(self._span(record.sent_ts, ts))
        # Indexed under its worker, timed by this exporter's clock.
        if record.worker is not None:
            self._stop_running(uuid, record)
        if host == OVERFLOW:
            # Workers past the hostname cap share one label: one's restart or silence would
            # orphan the others' tasks, so what runs there is not tracked for faults.
            if self.waiting_eta:
                self.waiting_eta.pop(uuid, None)
            return
        record.worker = host
        record.started_at = now
        running = self.running.get(host)
        if running is None:
            running = self.running[host] = {}
        running[uuid] = record
        if len(running) > MAX_RUNNING_PER_WORKER:
            self._forget_oldest_run(host, running)
        if self.waiting_eta:
            self.waiting_eta.pop(uuid, None)

    def _finish(self, event: dict, kind: str) -> tuple[TaskRecord, TaskSeries | None] | None:
        """The task's record, moved to the finished table; None for a duplicate."""
        uuid = event["uuid"]
        ts = event["timestamp"]
        done = self.finished.get(uuid)
        if done is not None and done[0] == kind and done[1] == ts:
            self.anomaly("duplicate", f"the same {kind} event twice")
            return None
        record = self.tasks.pop(uuid, None)
        if record is None and done is not None:
            record = done[2]  # the end of another run of a task that finished already
        elif record is None:
            self.anomaly("unknown_task", f"{kind} for a task never seen sent or received")
            name = event.get("name")
            record = TaskRecord(UNKNOWN if name is None else self._names(name), UNKNOWN)
        worker = record.worker
        if worker is not None:  # _stop_running inline: every task that ran ends here
            running = self.running.get(worker)
            if running is not None:
                running.pop(uuid, None)
            record.worker = None
        if record.faults is not None:
            self._run_ended(uuid, record)
        if self.waiting_eta:
            self.waiting_eta.pop(uuid, None)
        finished = self.finished
        finished[uuid] = (kind, ts, record)
        if len(finished) > self.limits.finished_memory:
            self.finished = dict(islice(finished.items(), len(finished) // 2, None))
        return record, self._task_series_of(record, event)

    def _task_succeeded(self, event: dict, now: float) -> None:
        finished = self._finish(event, "task-succeeded")
        if finished is None:
            return
        record, series = finished
        runtime = event.get("runtime")
        if series is not None:
            series.succeeded += 1
            if runtime is not None:
                series.runtime.observe(max(0.0, runtime))
        per_queue = self._task_queue_key(record.name, record.queue)
        if per_queue is not None:
            if runtime is not None:
                per_queue.runtime_succeeded.observe(max(0.0, runtime))
            if record.sent_ts is not None:
                per_queue.latency.observe(self._span(record.sent_ts, event["timestamp"]))
        _count_in(self.completions, record.queue, now)

    def _task_failed(self, event: dict, now: float) -> None:
        finished = self._finish(event, "task-failed")
        if finished is None:
            return
        record, series = finished
        if series is not None:
            exception = self._exceptions(event.get("exception_type", UNKNOWN_EXCEPTION))
            series.failed[exception] = series.failed.get(exception, 0) + 1
        ts = event["timestamp"]
        per_queue = self._task_queue_key(record.name, record.queue)
        if per_queue is not None:
            # Failed events carry no runtime: started and failed come from the same worker
            # clock, so their difference is the runtime without any clock offset.
            if record.started_ts is not None:
                per_queue.runtime_failed.observe(max(0.0, ts - record.started_ts))
            if record.sent_ts is not None:
                per_queue.latency.observe(self._span(record.sent_ts, ts))
        _count_in(self.completions, record.queue, now)

    def _task_retried(self, event: dict, now: float) -> None:
        uuid = event["uuid"]
        if uuid not in self.tasks and uuid in self.finished:
            self._retried_after_finish(event)
            return
        record = self._record(event, "task-retried")
        if record is None:
            return
        record.retried_ts = event["timestamp"]
        host = self._hosts(event["host"])
        faults = record.faults
        if faults is not None and faults.superseded_on in (host, "*"):
            faults.superseded_on = None  # late: the receipt of the retry began its attempt
        elif record.worker is None or record.worker == host:
            attempt = 1 if faults is None else faults.attempt + 1
            self._new_attempt(event["uuid"], record).attempt = attempt
        # Else the task runs on another worker: the retry, started before this event came
        # (without the retries field to tell it): its run goes on.
        series = self._task_series_of(record, event)
        if series is not None:
            series.retried += 1

    def _retried_after_finish(self, event: dict) -> None:
        """A late task-retried of a task that finished already: Task.retry() publishes the
        retry before its worker sends task-retried, so the retry can be received, started and
        finished first. No new record (it would never finish): the retry counts on the
        finished task's series."""
        record = self.finished[event["uuid"]][2]
        if record.retried_ts == event["timestamp"]:
            self.anomaly("duplicate", "the same task-retried event twice")
            return
        record.retried_ts = event["timestamp"]
        series = self._task_series_of(record, event)
        if series is not None:
            series.retried += 1

    def _new_attempt(self, uuid: str, record: TaskRecord) -> RunFaults:
        """The attempt of the task's run ends (a retry): its receipt and start are new events
        again, and its start is the first of the new attempt, not a second run; the old ones,
        seen again, are duplicates."""
        if record.worker is not None or record.faults is not None:
            self._run_ended(uuid, record)
        faults = RunFaults()
        before = record.faults
        if before is not None:
            faults.attempt = before.attempt
        faults.replaced = (
            *(() if before is None else before.replaced),
            ("task-received", record.received_ts),
            ("task-started", record.started_ts),
        )[-2 * MAX_EARLIER_STARTS :]
        record.faults = faults
        record.received_ts = record.started_ts = None
        if self.waiting_eta:
            self.waiting_eta.pop(uuid, None)
        return faults

    def _task_ended(self, event: dict, now: float) -> None:
        kind = event["type"]
        finished = self._finish(event, kind)
        if finished is None:
            return
        record, series = finished
        if series is not None:
            if kind == "task-rejected":
                series.rejected += 1
            else:
                series.revoked += 1
        _count_in(self.completions, record.queue, now)

    def _worker(self, event: dict, now: float) -> WorkerSeries | None:
        node = event["hostname"]
        host = self._hosts(event["host"])
        worker = self.workers.get(host)
        if worker is None:
            if host == OVERFLOW or not self._admit(WORKER_SERIES_WEIGHT):
                return None
            worker = self.workers[host] = WorkerSeries(node=node, last_seen=now)
        worker.last_seen = now
        worker.offline = False
        return worker

    def _worker_heartbeat(self, event: dict, now: float) -> None:
        worker = self._worker(event, now)
        if worker is None:
            return
        if worker.silent_orphans:
            self._heard_again(worker, event, now)
        active = event.get("active")
        if active is not None:
            worker.active = active
        processed = event.get("processed")
        if processed is not None:
            worker.processed = processed
        pid = event.get("pid")
        if pid is not None:
            worker.pid = pid

    def _worker_online(self, event: dict, now: float) -> None:
        # A worker comes online when it starts, and again when its consumer reconnects to the
        # broker (Celery restarts the heartbeat with it), its tasks still running. Only a new
        # process (another pid, or its count of tasks started back below the last one seen:
        # a container's worker is pid 1 every time) orphans what the previous one ran.
        host = self._hosts(event["host"])
        before = self.workers.get(host)
        restarted = before is None or _new_process(before, event)
        self._worker_heartbeat(event, now)
        if restarted and self.running.get(host):
            self._orphan_runs_on(host, now)

    def _worker_offline(self, event: dict, now: float) -> None:
        worker = self._worker(event, now)
        if worker is not None:
            # Draining: Celery sends worker-offline before its warm shutdown waits for the tasks
            # running, so those are orphaned only as task_faults.drained_orphan says (or when a
            # new process of the worker comes online), in housekeeping.
            worker.offline = True
            worker.active = 0

    def _worker_telemetry(self, event: dict, now: float) -> None:
        worker = self._worker(event, now)
        if worker is None:
            return
        worker.pool_size = event.get("pool_size")
        worker.rss_bytes = event.get("rss_bytes")
        worker.memory_limit_bytes = event.get("memory_limit_bytes")
        worker.memory_percent = event.get("memory_percent")
        timeout = worker.visibility_timeout = event.get("visibility_timeout")
        acks_late = worker.acks_late = event.get("acks_late")
        limits = event.get("time_limits")
        if limits is not None and limits != worker.time_limits:
            worker.time_limits = self._shared_limits(limits)
        # At once what makes the fleet's values stricter (housekeeping recomputes them all):
        # the ETA of the next task received is judged against this worker's timeout too.
        fleet = self.visibility_timeout
        if (
            self.limits.visibility_timeout is None
            and timeout is not None
            and (fleet is None or timeout < fleet)
        ):
            self.visibility_timeout = timeout
        if acks_late:
            self.acks_late = True

    def _shared_limits(self, limits: dict[str, float]) -> dict[str, float]:
        """One dict per distinct announcement: the workers of a fleet announce the same."""
        key = frozenset(limits.items())
        table = self._limit_tables.get(key)
        if table is None:
            if len(self._limit_tables) >= 64:
                self._limit_tables.clear()
            table = self._limit_tables[key] = limits
        return table

    # ---- task faults -------------------------------------------------------------------------

    def _started_again(self, uuid: str, record: TaskRecord) -> None:
        """Another start of a task started before in this attempt (not a duplicate: _record
        tells those): the repeated run, and the redelivery of an orphan."""
        faults = record.faults
        if faults is None:
            faults = record.faults = RunFaults()
        faults.earlier_starts = (*faults.earlier_starts, record.started_ts)[  # type: ignore[assignment]
            -MAX_EARLIER_STARTS:
        ]
        per_queue = self._task_queue_key(record.name, record.queue)
        if per_queue is not None:
            per_queue.runs_repeated += 1
        if faults.orphaned_at is not None:
            self._orphan_ended(uuid, faults, "redelivered")

    def _stop_running(self, uuid: str, record: TaskRecord) -> None:
        running = self.running.get(record.worker)  # type: ignore[arg-type]
        if running is not None:
            running.pop(uuid, None)
        record.worker = None

    def _run_ended(self, uuid: str, record: TaskRecord) -> None:
        """Its run ended (finished, retried, forgotten): out of the index, and an orphan that
        ends on its own (its worker was only silent) ends without an outcome."""
        if record.worker is not None:
            self._stop_running(uuid, record)
        faults = record.faults
        if faults is not None and faults.orphaned_at is not None:
            self._orphan_ended(uuid, faults, None)

    def _forget_oldest_run(self, host: str, running: dict[str, TaskRecord]) -> None:
        uuid = next(iter(running))
        running.pop(uuid).worker = None
        self.anomaly("running_forgotten", f"over {MAX_RUNNING_PER_WORKER} tasks running on {host}")

    def _orphan_drained(self, host: str, running: dict[str, TaskRecord], now: float) -> None:
        """The tasks of a worker that announced its shutdown that have run past their bound:
        the warm shutdown would have ended them by now."""
        drained = [
            uuid
            for uuid, record in running.items()
            if task_faults.drained_orphan(now - record.started_at, self.stuck_bound(record.name))
        ]
        if drained:
            self._orphan_runs_on(host, now, drained)

    def _orphan_runs_on(
        self, host: str, now: float, uuids: list[str] | None = None, *, silent: bool = False
    ) -> None:
        """Every task running on ``host`` (or those of ``uuids``), which went down, is an orphan
        from now on, until it is started again or its redelivery window passes (or, sooner, its
        end is reported, or its worker, only ``silent``, is heard again)."""
        if uuids is None:
            running = self.running.pop(host, None)
        else:
            index = self.running.get(host, {})
            running = {u: index.pop(u) for u in uuids if u in index}
        if not running:
            return
        window = self._redelivery_window(host)
        if silent:
            # A silent worker may only be blocked (a solo pool's long task holds its
            # heartbeats): give it the worker timeout to be heard again before "lost", even
            # when nothing would come back.
            window = max(window, self.limits.worker_timeout)
        for uuid, record in running.items():
            record.worker = None
            faults = record.faults
            if faults is None:
                faults = record.faults = RunFaults()
            faults.orphaned_at = now
            faults.orphaned_as = (record.name, record.queue)
            faults.window = window
            faults.silent_on = host if silent else None
            self.orphans[uuid] = record
            per_queue = self._task_queue_key(record.name, record.queue)
            if per_queue is not None:
                per_queue.orphaned += 1
            if window <= 0:  # acknowledged before it ran: nothing will come back
                self._judge_orphan(uuid, faults, now)
        self._log_once("orphans", f"tasks orphaned: worker {host} went down while running them")

    def _heard_again(self, worker: WorkerSeries, event: dict, now: float) -> None:
        """A worker whose silence orphaned tasks is heard again (before ``event`` updates it):
        the same process was only silent (blocked, or this exporter missed its heartbeats), so
        the orphans still waiting are running there after all: they go back to the index,
        without an outcome. A new process leaves them orphans."""
        worker.silent_orphans = False
        host = self._hosts(event["host"])
        if _new_process(worker, event):
            self._silent_process_gone(host)
            return
        for uuid, record in list(self.orphans.items()):
            faults = record.faults
            if faults is None or faults.silent_on != host:
                continue
            self._orphan_ended(uuid, faults, None)
            record.worker = host
            running = self.running.get(host)
            if running is None:
                running = self.running[host] = {}
            running[uuid] = record

    def _silent_process_gone(self, host: str) -> None:
        """The process whose silence orphaned tasks on ``host`` is known to be gone (a new
        process of the host is heard, or the worker is purged): its orphans may now be judged
        lost, after their redelivery window as any other."""
        for record in self.orphans.values():
            faults = record.faults
            if faults is not None and faults.silent_on == host:
                faults.silent_on = None

    def _silent(self, worker: WorkerSeries, now: float) -> bool:
        """Whether ``worker`` is silent past the worker timeout. While the event stream is down
        every worker looks silent: silence counts only while this exporter hears, and from
        when it heard again (a reconnect) at the earliest."""
        if not self.stream_connected:
            return False
        silence = now - max(worker.last_seen, self.hearing_since)
        return silence > self.limits.worker_timeout

    def _may_judge(self, now: float) -> bool:
        """No "lost" while deaf, nor before the workers had a timeout to be heard again: a
        redelivery may have been missed, or the orphan's worker is about to take it back."""
        return self.stream_connected and now - self.hearing_since >= self.limits.worker_timeout

    def _judge_orphan(self, uuid: str, faults: RunFaults, now: float) -> None:
        """Lost once its redelivery window has passed, but never while the exporter cannot
        judge, nor while the process whose silence orphaned it may still run it (a solo pool's
        long task holds its heartbeats; the task may yet succeed there)."""
        if faults.orphaned_at is None or faults.silent_on is not None:
            return
        if now - faults.orphaned_at >= faults.window and self._may_judge(now):
            self._orphan_ended(uuid, faults, "lost")

    def _redelivery_window(self, host: str) -> float:
        """The redelivery window of the orphans of ``host``. The message comes back when a live
        worker's restore sweep finds it older than that worker's timeout (the fleet's in force,
        the last known one while none is live); the worker that went down announced its own,
        the best guess of the timeout of whatever worker comes next. The larger of the two: a
        task must not be counted lost before its message could have come back."""
        worker = self.workers.get(host)
        timeout = self.visibility_timeout
        if self.limits.visibility_timeout is None and worker is not None:
            own = worker.visibility_timeout
            if own is not None and (timeout is None or own > timeout):
                timeout = own
        acks_late = None if worker is None else worker.acks_late
        return task_faults.redelivery_window(timeout, acks_late)

    def _orphan_ended(self, uuid: str, faults: RunFaults, outcome: str | None) -> None:
        self.orphans.pop(uuid, None)
        faults.orphaned_at = None
        faults.silent_on = None
        per_queue = self.task_queue_series.get(faults.orphaned_as)
        if per_queue is None:
            return
        per_queue.orphaned -= 1
        if outcome == "redelivered":
            per_queue.orphans_redelivered += 1
        elif outcome == "lost":
            per_queue.orphans_lost += 1

    def _received_with_eta(
        self, uuid: str, record: TaskRecord, eta: float, received: float, now: float
    ) -> None:
        """A task received at ``received`` that waits for its ETA: the trap when that is further
        than the visibility timeout (the broker hands it out again while it waits)."""
        ahead = eta - received
        if ahead <= 0:
            return
        # Its task-fault series, at 0 until a fault counts, from the first task that waits.
        per_queue = self._task_queue_key(record.name, record.queue)
        faults = record.faults
        if faults is None:
            faults = record.faults = RunFaults()
        if not faults.eta_counted and task_faults.eta_beyond_visibility(
            eta, received, self.visibility_timeout
        ):
            faults.eta_counted = True
            if per_queue is not None:
                per_queue.eta_beyond_visibility += 1
        waiting = self.waiting_eta
        before = waiting.get(uuid)
        if before is not None and before[1] > ahead:
            return  # a copy handed out again: the first receipt tells how far it was
        waiting[uuid] = (record, ahead, now + ahead)
        if len(waiting) > MAX_WAITING_ETA:
            waiting.pop(next(iter(waiting)))
            self.anomaly("eta_forgotten", f"over {MAX_WAITING_ETA} tasks waiting for their ETA")

    def stuck_bound(self, name: str) -> float:
        limits = self.limits
        return task_faults.stuck_bound(
            name,
            bounds=limits.stuck_bounds,
            time_limit=self.time_limits.get(name),
            default=limits.stuck_after,
        )

    def running_view(
        self, now: float
    ) -> tuple[dict[tuple[str, str], tuple[int, float]], dict[str, float]]:
        """(name, queue) -> (stuck, longest running seconds) of the tasks running on live
        workers, and the bound of each name running: walks the per-worker index only."""
        view: dict[tuple[str, str], tuple[int, float]] = {}
        bounds: dict[str, float] = {}
        workers = self.workers
        for host, running in self.running.items():
            if not running:
                continue
            worker = workers.get(host)
            # Unknown (no heartbeat seen yet): its task events say it runs. Draining (it sent
            # worker-offline): its tasks still run, until the drain rule orphans them.
            if worker is not None and not worker.offline and self._silent(worker, now):
                continue  # silent: its tasks are orphaned at the next housekeeping
            for record in running.values():
                name = record.name
                bound = bounds.get(name)
                if bound is None:
                    bound = bounds[name] = self.stuck_bound(name)
                age = max(0.0, now - record.started_at)
                key = (name, record.queue)
                stuck, longest = view.get(key, (0, 0.0))
                view[key] = (stuck + (age > bound), max(longest, age))
        return view, bounds

    def eta_view(self) -> dict[tuple[str, str], float]:
        """(name, queue) -> farthest ETA, in seconds from receipt, of the tasks waiting now."""
        view: dict[tuple[str, str], float] = {}
        for record, ahead, _due in self.waiting_eta.values():
            key = (record.name, record.queue)
            if ahead > view.get(key, 0.0):
                view[key] = ahead
        return view

    def _task_fault_housekeeping(self, now: float) -> None:
        self._fleet_settings(now)
        # While the event stream is down, nothing is heard from then on (see _silent).
        if not self.stream_connected:
            self.hearing_since = now
        for host, running in list(self.running.items()):
            if not running:
                del self.running[host]
                continue
            worker = self.workers.get(host)
            if worker is None:
                continue  # unknown (no worker event seen yet): its task events say it runs
            if worker.offline:
                self._orphan_drained(host, running, now)
            elif self._silent(worker, now):
                self._orphan_runs_on(host, now, silent=True)
                worker.silent_orphans = True
        for uuid, record in list(self.orphans.items()) if self._may_judge(now) else ():
            faults = record.faults
            if faults is None or faults.orphaned_at is None:  # cannot be: kept consistent
                self.orphans.pop(uuid)
            else:
                self._judge_orphan(uuid, faults, now)
        if self.waiting_eta:
            late = [
                u for u, (_r, _a, due) in self.waiting_eta.items() if now > due + ETA_START_GRACE
            ]
            for uuid in late:
                del self.waiting_eta[uuid]

    def _fleet_settings(self, now: float) -> None:
        """The visibility timeout, acks_late and time limits in force, from the live workers."""
        timeout: float | None = None
        acks_late = False
        tables: dict[int, dict[str, float]] = {}
        live = False
        for worker in self.workers.values():
            if not self.worker_up(worker, now):
                continue
            live = True
            announced = worker.visibility_timeout
            if announced is not None and (timeout is None or announced < timeout):
                timeout = announced
            acks_late = acks_late or bool(worker.acks_late)
            if worker.time_limits:
                tables[id(worker.time_limits)] = worker.time_limits
        if not live:
            # The last known values stay in force while no worker is live: the broker still
            # hands messages back after the timeout the fleet ran with, and the orphans of the
            # last worker down must not be judged against an unknown one.
            return
        setting = self.limits.visibility_timeout
        self.visibility_timeout = setting if setting is not None else timeout
        self.acks_late = acks_late
        merged: dict[str, float] = {}
        room = self.limits.max_task_names
        for table in tables.values():
            for name, seconds in table.items():
                before = merged.get(name)
                if before is None:
                    if len(merged) < room:
                        merged[name] = seconds
                elif seconds > before:
                    merged[name] = seconds
        self.time_limits = merged

    def _beat_entry(self, name: str) -> BeatSeries | None:
        name = self._names(name)
        entry = self.beat.get(name)
        if entry is None:
            if name == OVERFLOW or not self._admit(BEAT_SERIES_WEIGHT):
                return None
            entry = self.beat[name] = BeatSeries()
        entry.missing_since = None
        return entry

    def _beat_sent(self, event: dict, now: float) -> None:
        entry = self._beat_entry(event["name"])
        if entry is None:
            return
        ran = event["timestamp"]
        if entry.last_run is None or ran >= entry.last_run:
            entry.last_run = ran
        interval = event.get("interval_seconds")
        entry.interval = interval
        # An estimate until the announcement Beat sends within a second of a run says it
        # exactly (a crontab's gaps may differ from one run to the next).
        if interval:
            entry.next_run = ran + interval
        task = event.get("task")
        if task is not None:
            entry.task = self._names(task)

    def _beat_schedule(self, event: dict, now: float) -> None:
        listed = set()
        for announced in event["entries"]:
            entry = self._beat_entry(announced["name"])
            if entry is None:
                continue
            listed.add(announced["name"])
            entry.next_run = announced["next_run"]
            entry.interval = announced.get("interval_seconds")
            task = announced.get("task")
            entry.task = None if task is None else self._names(task)
            last_run = announced.get("last_run")
            # Beat's own record wins only when newer: a Beat started with a fresh schedule
            # file has forgotten a run this exporter saw.
            if last_run is not None and (entry.last_run is None or last_run > entry.last_run):
                entry.last_run = last_run
        if event["complete"]:
            for name, entry in self.beat.items():
                if name not in listed and entry.missing_since is None:
                    entry.missing_since = now

    def purge_beat(self, now: float) -> list[str]:
        """Forget entries that complete announcements have left out for ``purge_offline_after``
        seconds: removed from the schedule. An entry is never forgotten for silence alone: a
        dead Beat must go on showing (and alerting) its missed runs."""
        limit = self.limits.purge_offline_after
        gone = [
            name
            for name, entry in self.beat.items()
            if limit > 0 and entry.missing_since is not None and now - entry.missing_since > limit
        ]
        for name in gone:
            del self.beat[name]
            self.series_count -= BEAT_SERIES_WEIGHT
            log.info("purged Beat entry %s, no longer in the schedule", name)
        return gone

    # ---- bookkeeping -------------------------------------------------------------------------

    def _span(self, start: float, end: float) -> float:
        """end - start across two hosts' clocks; a negative span is clock skew, counted."""
        span = end - start
        if span < 0:
            self.anomaly("clock_skew", "an event dated before the one that caused it")
            return 0.0
        return span

    def _admit(self, weight: int) -> bool:
        if self.series_count + weight > self.limits.max_series:
            self.series_limit_hits += 1
            self.anomaly("series_limit", f"series cap of {self.limits.max_series} reached")
            return False
        self.series_count += weight
        return True

    def _evict_tasks(self) -> None:
        # Tasks that never finish (events lost, workers killed) must not fill memory: forget the
        # oldest tenth in one pass, which keeps the amortised cost per event constant.
        drop = max(1, len(self.tasks) // 10)
        items = iter(self.tasks.items())
        for uuid, record in islice(items, drop):
            if record.worker is not None or record.faults is not None:
                self._run_ended(uuid, record)
            if self.waiting_eta:
                self.waiting_eta.pop(uuid, None)
        self.tasks = dict(items)
        self.anomaly("task_evicted", "in-flight task table full, oldest tasks forgotten", drop)

    def anomaly(self, kind: str, detail: str, amount: int = 1) -> None:
        self.anomalies[kind] = self.anomalies.get(kind, 0) + amount
        self._log_once(f"anomaly:{kind}", detail)

    def count_dropped(self, reason: str, amount: int) -> None:
        if amount > 0:
            self.dropped[reason] = self.dropped.get(reason, 0) + amount

    def _log_once(self, key: str, message: str) -> None:
        if key not in self._logged_kinds:
            self._logged_kinds.add(key)
            log.warning("%s (logged once; counted in the exporter's metrics)", message)

    # ---- reconnects: estimate what was missed from each sender's Lamport clock --------------

    def open_gap(self, now: float, window: float = 2.0) -> None:
        """After a reconnect: every sender's first clocks tell how many events we missed."""
        self._gap_until = now + window
        self.hearing_since = now
        self._gap_last_clock = dict(self.last_clock)
        self._gap_first_clock = {}

    def _gap_observe(self, sender: str, clock: int, now: float) -> None:
        first = self._gap_first_clock.get(sender)
        if first is None or clock < first:
            self._gap_first_clock[sender] = clock
        if self._gap_until is not None and now >= self._gap_until:
            self.close_gap()

    def close_gap(self) -> None:
        missed = 0
        for sender, first in self._gap_first_clock.items():
            before = self._gap_last_clock.get(sender)
            if before is not None and first > before + 1:
                # Clocks also advance for control messages: cap one sender's estimate.
                missed += min(first - before - 1, 10_000_000)
        self.count_dropped("resubscribe", missed)
        self._gap_until = None
        self._gap_first_clock = {}
        self._gap_last_clock = {}

    def housekeeping(self, now: float) -> list[str]:
        """Purge workers silent for longer than ``purge_offline_after``; return their names."""
        if self._gap_until is not None and now >= self._gap_until:
            self.close_gap()
        if self.parked:
            self.release_parked(now)
        # Before the purge: a purged worker's tasks must be orphans, not tasks of an unknown one.
        self._task_fault_housekeeping(now)
        gone = self._purgeable(now)
        for host in gone:
            if self.running.get(host):  # a worker silent this long is gone, drained or not
                self._orphan_runs_on(host, now)
            self._silent_process_gone(host)
            self.purge_worker(host)
        if self.beat:
            self.purge_beat(now)
        return gone

    def _purgeable(self, now: float) -> list[str]:
        """The workers silent for longer than ``purge_offline_after`` (with worker groups, the
        ones that stopped cleanly: for longer than ``worker_timeout``). Silence counts as in the
        task-fault housekeeping: not while the stream is down, and from a reconnect at the
        earliest (every worker looked silent meanwhile). A draining worker (worker-offline)
        that still runs tasks is kept until its drain rule has handled them: a warm shutdown
        may wait that long for a long task."""
        limit = self.limits.purge_offline_after
        if limit <= 0 or not self.stream_connected:
            return []
        heard_from = self.hearing_since  # as in _silent
        # With worker groups (autoscaling) a worker that stopped cleanly and runs nothing more
        # goes once the worker timeout has passed without it coming back: a scale-down is no
        # fault to show, and the pods gone must not hold gauges for the whole purge delay. A
        # worker gone silent without worker-offline (a crash) stays for CeleryWorkerDown.
        scaled_down = self.limits.worker_timeout if self.worker_groups is not None else limit
        return [
            host
            for host, worker in self.workers.items()
            if now - max(worker.last_seen, heard_from)
            > (min(limit, scaled_down) if worker.offline else limit)
            and not (worker.offline and self.running.get(host))
        ]

    def purge_worker(self, host: str) -> None:
        worker = self.workers.pop(host, None)
        if worker is not None:
            self.series_count -= WORKER_SERIES_WEIGHT
            self.last_clock.pop(worker.node, None)
        groups = self.worker_groups
        if host in self.shared_task_hosts or (
            # A group first counted by a worker of its own name: a live member still counts in it.
            groups is not None
            and any(groups.group_of(other) == host for other in self.workers if other != host)
        ):
            # Its name is also a group's, whose task series live on with the group's workers.
            log.info("purged the series of worker %s, silent for too long", host)
            return
        for key in [k for k in self.task_series if k[1] == host]:
            del self.task_series[key]
            self.series_count -= TASK_SERIES_WEIGHT
        # Autoscaled workers come and go with new names: a purged one frees its place.
        self.labels["hostname"].forget(host)
        log.info("purged the series of worker %s, silent for too long", host)

    def worker_up(self, worker: WorkerSeries, now: float) -> bool:
        return not worker.offline and now - worker.last_seen <= self.limits.worker_timeout

    def known_queues(self) -> set[str]:
        """Queues seen in events: admitted through the queue cap, so the broker poller polls at
        most ``max_queues`` of them."""
        return {q for q in self.arrivals if q != UNKNOWN and q != OVERFLOW}


def _new_process(worker: WorkerSeries, event: dict) -> bool:
    """Whether a worker-online comes from another process than the one heard from before;
    without pid or count to tell, it does (a worker is online first when it starts)."""
    pid, processed = event.get("pid"), event.get("processed")
    if pid is None and processed is None:
        return True
    if pid is not None and worker.pid is not None and pid != worker.pid:
        return True
    return processed is not None and processed < worker.processed


def _repeats(faults: RunFaults, kind: str, ts: float) -> bool:
    """Whether ``kind`` at ``ts`` is an event of the task applied before (an earlier start of
    this attempt, a receipt or start of an attempt a retry replaced)."""
    if kind == "task-started" and ts in faults.earlier_starts:
        return True
    return (kind, ts) in faults.replaced


def _count_in(rates: dict[str, MinuteRate], queue: str, now: float) -> None:
    """One more arrival or completion in ``queue``'s per-minute rate."""
    rate = rates.get(queue)
    if rate is None:
        rate = rates[queue] = MinuteRate(now)
    rate.add(now)
