"""Render the state as Prometheus text exposition (format 0.0.4), names from docs/metrics.md.

Hand-written instead of prometheus_client's collector objects: those build one Python object
per sample on every scrape, which is the measured hot spot at 100,000+ samples (see
bench/exporter_throughput.py). The output is checked against prometheus_client's parser and
``promtool check metrics`` in the tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from exporters.metrics.histogram import Histogram
from exporters.metrics.queues import QueueSnapshot
from exporters.metrics.state import FleetState
from exporters.stream.events import TASK_EVENTS
from exporters.stream.status import StreamStatus


def escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def number(value: float | int) -> str:
    if type(value) is int:
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(value)


@dataclass
class Thresholds:
    """fleetops_breaking_point and fleetops_objective samples: (labels, value)."""

    breaking_points: list[tuple[str, str, float]] = field(default_factory=list)
    objectives: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class Extras:
    """Numbers owned by other threads, gathered at scrape time."""

    status: StreamStatus
    snapshot: QueueSnapshot
    consumers: dict[str, int]
    overflow_dropped: int
    last_scrape_seconds: float
    thresholds: Thresholds
    rejected: dict[str, int] = field(default_factory=dict)
    corrected: dict[str, int] = field(default_factory=dict)
    stalled: dict[str, int] = field(default_factory=dict)
    heartbeat_age: dict[str, float] = field(default_factory=dict)
    skipped_queues: int = 0


SELF_PREFIX = "fleetops_exporter_"


def only(parts: list[str], names: frozenset[str]) -> list[str]:
    """The parts of the families in ``names``; every family starts with its own HELP part."""
    kept: list[str] = []
    keep = False
    for part in parts:
        if part.startswith("# HELP "):
            keep = part.split(" ", 3)[2] in names
        if keep:
            kept.append(part)
    return kept


class Renderer:
    def __init__(self, prefix: str = "celery_", static_labels: dict[str, str] | None = None):
        self.prefix = prefix
        self.static = "".join(f',{k}="{escape(v)}"' for k, v in (static_labels or {}).items())
        self._labels: dict[tuple, str] = {}
        self._failed_parts: dict[tuple[str, str, str], tuple[str, str]] = {}
        self._bounds_text: dict[tuple[float, ...], list[str]] = {}

    def _cached(self, key: tuple, build: Callable[[], str]) -> str:
        text = self._labels.get(key)
        if text is None:
            if len(self._labels) > 1_000_000:
                self._labels.clear()
            text = self._labels[key] = build()
        return text

    def labels(self, **values: str) -> str:
        inner = ",".join(f'{k}="{escape(v)}"' for k, v in values.items())
        if inner:
            return "{" + inner + self.static + "}"
        # Static labels alone (e.g. the app label on a plain gauge): no leading comma, which
        # Prometheus refuses ("invalid label name") though prometheus_client's parser takes it.
        return "{" + self.static.removeprefix(",") + "}" if self.static else ""

    def render(
        self,
        state: FleetState,
        extras: Extras,
        now: float,
        wall: float,
        names: frozenset[str] | None = None,
    ) -> list[str]:
        """Every family, or only ``names`` (``/metrics?name[]=...``, as prometheus_client
        serves it): asking for the exporter's own counters must not cost a full render."""
        out: list[str] = []
        if names is None or not all(n.startswith(SELF_PREFIX) for n in names):
            self._tasks(out, state)
            self._task_latency(out, state)
            self._task_faults(out, state, now)
            self._queues(out, state, extras, now)
            self._broker_management(out, extras.snapshot)
            self._workers(out, state, now)
            self._beat(out, state)
            self._thresholds(out, extras.thresholds)
        self._self_monitoring(out, state, extras, wall)
        return out if names is None else only(out, names)

    def render_health(self, extras: Extras) -> str:
        """Only the parts' health: what can be said while the state is locked by a stuck
        applier (every stalled part is reported, nothing else is)."""
        out: list[str] = []
        for metric, help_text, samples, kind in self._health_families(extras):
            self._gauge_family(out, metric, help_text, samples, kind=kind)
        return "".join(out)

    def _health_families(self, extras: Extras) -> list[tuple[str, str, list, str]]:
        def by_part(values: dict) -> list[tuple[str, float | int]]:
            return [(self.labels(part=k), v) for k, v in sorted(values.items())]

        return [
            (
                "fleetops_exporter_stalled",
                "1 while a part of the exporter has died or makes no progress (see /healthz).",
                by_part(extras.stalled),
                "gauge",
            ),
            (
                "fleetops_exporter_part_heartbeat_age_seconds",
                "Seconds since each part of the exporter last went round its loop.",
                by_part(extras.heartbeat_age),
                "gauge",
            ),
        ]

    # ---- families ----------------------------------------------------------------------------

    def _header(self, out: list[str], name: str, kind: str, help_text: str) -> None:
        out.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")

    def _task_labels(self, key: tuple[str, str, str]) -> str:
        name, host, queue = key
        return self._cached(
            ("t", *key),
            lambda: (
                f'name="{escape(name)}",hostname="{escape(host)}",'
                f'queue_name="{escape(queue)}"{self.static}'
            ),
        )

    def _failed_label_parts(self, key: tuple[str, str, str]) -> tuple[str, str]:
        """The series' labels split where ``exception`` goes (after hostname, as the peer has
        it), built from the key's parts: a name or hostname may contain any text, including
        ``queue_name``, so the rendered labels cannot be searched for the place."""
        # A cache of its own, keyed by the series key as it is: going through _cached (a new
        # key tuple and closure per series) cost ~5% of _tasks at 10,000 series.
        parts = self._failed_parts.get(key)
        if parts is None:
            if len(self._failed_parts) > 1_000_000:
                self._failed_parts.clear()
            name, host, queue = key
            parts = self._failed_parts[key] = (
                f'name="{escape(name)}",hostname="{escape(host)}",',
                f'queue_name="{escape(queue)}"{self.static}',
            )
        return parts

    def _tasks(self, out: list[str], state: FleetState) -> None:
        p = self.prefix
        helps = {
            "task-sent": "Sent when a task message is published.",
            "task-received": "Sent when the worker receives a task.",
            "task-started": "Sent just before the worker executes the task.",
            "task-succeeded": "Sent if the task executed successfully.",
            "task-failed": "Sent if the execution of the task failed.",
            "task-retried": "Sent if the task failed, but will be retried in the future.",
            "task-rejected": "The task was rejected by the worker, possibly to be re-queued or "
            "moved to a dead letter queue.",
            "task-revoked": "Sent if the task has been revoked.",
        }
        # Labels once per series, then plain reads: the 8 counters and the histogram reuse them
        # (looking them up per family was a third of a render; measured with pyinstrument).
        labelled = [(k, self._task_labels(k), s) for k, s in state.task_series.items()]
        # Like the peer: producers' series (only sends) appear only in the sent counter.
        workers = [
            (k, labels, s)
            for k, labels, s in labelled
            if s.received or s.started or s.succeeded or s.failed or not s.sent
        ]
        for event in TASK_EVENTS:
            attr = event.removeprefix("task-")
            metric = f"{p}task_{attr}_total"
            self._header(out, metric, "counter", helps[event])
            if attr == "failed":
                for key, _labels, series in workers:
                    head, tail = self._failed_label_parts(key)
                    failed = series.failed
                    if not failed:
                        out.append(f'{metric}{{{head}exception="",{tail}}} 0\n')
                        continue
                    for exception, count in failed.items():
                        out.append(
                            f'{metric}{{{head}exception="{escape(exception)}",{tail}}} {count}\n'
                        )
            elif attr == "sent":
                out.extend(
                    f"{metric}{{{labels}}} {s.sent}\n" for _k, labels, s in labelled if s.sent
                )
            else:
                out.extend(
                    f"{metric}{{{labels}}} {getattr(s, attr)}\n" for _k, labels, s in workers
                )
        metric = f"{p}task_runtime"
        self._header(out, metric, "histogram", "Histogram of task runtime measurements.")
        for _key, labels, series in labelled:
            if any(series.runtime.counts):
                self._histogram(out, metric, labels, series.runtime)

    def _task_latency(self, out: list[str], state: FleetState) -> None:
        items = list(state.task_queue_series.items())

        def labels(key: tuple[str, str], extra: str = "") -> str:
            return self._cached(
                ("q", *key, extra),
                lambda: (
                    f'name="{escape(key[0])}",queue_name="{escape(key[1])}"{extra}{self.static}'
                ),
            )

        metric = "fleetops_task_runtime_seconds"
        self._header(out, metric, "histogram", "Runtime of succeeded and failed tasks.")
        for key, s in items:
            for state_name, histogram in (
                ("succeeded", s.runtime_succeeded),
                ("failed", s.runtime_failed),
            ):
                if any(histogram.counts):
                    self._histogram(out, metric, labels(key, f',state="{state_name}"'), histogram)
        metric = f"{self.prefix}task_queue_wait_time"
        self._header(out, metric, "histogram", "Time a task waited from sent to started.")
        for key, s in items:
            if any(s.wait.counts):
                self._histogram(out, metric, labels(key), s.wait)
        metric = "fleetops_task_latency_seconds"
        self._header(out, metric, "histogram", "End-to-end latency from sent to done.")
        for key, s in items:
            if any(s.latency.counts):
                self._histogram(out, metric, labels(key), s.latency)

    def _task_faults(self, out: list[str], state: FleetState, now: float) -> None:
        """Orphaned, stuck and twice-run tasks and the visibility-timeout trap (docs/metrics.md,
        "Task faults"). The counters and the two main gauges have a series, at 0 too, for every
        (name, queue_name) known, so that increase() sees the first fault."""
        series = sorted(state.task_queue_series.items())

        def labels(key: tuple[str, str], extra: str = "") -> str:
            return self._cached(
                ("q", *key, extra),
                lambda: (
                    f'name="{escape(key[0])}",queue_name="{escape(key[1])}"{extra}{self.static}'
                ),
            )

        def of_name(name: str) -> str:
            return self._cached(("n", name), lambda: f'name="{escape(name)}"{self.static}')

        running, bounds = state.running_view(now)
        families: list[tuple[str, str, str, list[tuple[str, float | int]]]] = [
            (
                "fleetops_task_runs_repeated_total",
                "counter",
                "Extra starts of a task id within one attempt: the task ran twice.",
                [(labels(k), s.runs_repeated) for k, s in series],
            ),
            (
                "fleetops_task_orphans_total",
                "counter",
                "Orphaned tasks that ended: started again (redelivered) or never (lost).",
                [
                    (labels(k, f',outcome="{outcome}"'), count)
                    for k, s in series
                    for outcome, count in (
                        ("redelivered", s.orphans_redelivered),
                        ("lost", s.orphans_lost),
                    )
                ],
            ),
            (
                "fleetops_task_eta_beyond_visibility_total",
                "counter",
                "Tasks received with an ETA further away than the visibility timeout.",
                [(labels(k), s.eta_beyond_visibility) for k, s in series],
            ),
            (
                "fleetops_tasks_orphaned",
                "gauge",
                "Tasks whose worker went down while running them, waiting for redelivery.",
                [(labels(k), s.orphaned) for k, s in series],
            ),
            (
                "fleetops_tasks_stuck",
                "gauge",
                "Tasks running past their bound on a live worker.",
                [(labels(k), running[k][0] if k in running else 0) for k, _s in series],
            ),
            (
                "fleetops_task_running_longest_seconds",
                "gauge",
                "Age of the longest-running task on a live worker, by this exporter's clock.",
                [(labels(k), round(v[1], 3)) for k, v in sorted(running.items())],
            ),
            (
                "fleetops_task_stuck_bound_seconds",
                "gauge",
                "Seconds a task may run before it is stuck, for tasks running now.",
                [(of_name(n), b) for n, b in sorted(bounds.items())],
            ),
            (
                "fleetops_task_eta_farthest_seconds",
                "gauge",
                "Farthest ETA, in seconds from receipt, of the tasks waiting for their ETA now.",
                [(labels(k), round(v, 3)) for k, v in sorted(state.eta_view().items())],
            ),
            (
                "fleetops_task_time_limit_seconds",
                "gauge",
                "Hard time limit of the task announced by the live workers (the largest).",
                [(of_name(n), v) for n, v in sorted(state.time_limits.items())],
            ),
        ]
        for metric, kind, help_text, samples in families:
            self._header(out, metric, kind, help_text)
            out.extend(f"{metric}{{{ls}}} {number(v)}\n" for ls, v in samples)
        timeout = state.visibility_timeout
        self._gauge_family(
            out,
            "fleetops_broker_visibility_timeout_seconds",
            "Visibility timeout in force: the setting, else the smallest a live worker announced "
            "(the last known while none is live).",
            []
            if timeout is None
            else [(self.labels(acks_late=str(state.acks_late).lower()), timeout)],
        )

    def _histogram(self, out: list[str], metric: str, labels: str, h: Histogram) -> None:
        bounds = self._bounds_text.get(h.bounds)
        if bounds is None:
            bounds = self._bounds_text[h.bounds] = [*map(number, h.bounds), "+Inf"]
        prefix = f'{metric}_bucket{{{labels},le="'
        total = 0
        parts = []
        for bound, count in zip(bounds, h.counts, strict=True):
            total += count
            parts.append(f'{prefix}{bound}"}} {total}\n')
        out.append("".join(parts))
        out.append(f"{metric}_sum{{{labels}}} {number(h.sum)}\n")
        out.append(f"{metric}_count{{{labels}}} {total}\n")

    def _gauge_family(
        self,
        out: list[str],
        metric: str,
        help_text: str,
        samples: list[tuple[str, float | int]],
        kind: str = "gauge",
    ) -> None:
        self._header(out, metric, kind, help_text)
        out.extend(f"{metric}{labels} {number(value)}\n" for labels, value in samples)

    def _queues(self, out: list[str], state: FleetState, extras: Extras, now: float) -> None:
        snap = extras.snapshot
        queues = sorted(set(snap.lengths) | state.known_queues())
        q = {name: self.labels(queue_name=name) for name in queues}
        self._gauge_family(
            out,
            f"{self.prefix}queue_length",
            "The number of message in broker queue, all priority sub-queues summed.",
            [(q[name], snap.length(name)) for name in queues if name in snap.lengths],
        )
        self._gauge_family(
            out,
            "fleetops_queue_length_by_priority",
            "Waiting messages per priority step.",
            [
                (self.labels(queue_name=name, priority=str(step)), n)
                for name in queues
                for step, n in sorted(snap.lengths.get(name, {}).items())
            ],
        )
        self._gauge_family(
            out,
            "fleetops_queue_unacked",
            "Messages reserved by a worker, not yet acknowledged.",
            [(self.labels(queue_name=k), v) for k, v in sorted(snap.unacked.items())],
        )
        self._gauge_family(
            out,
            "fleetops_queue_oldest_message_age_seconds",
            "Age of the oldest waiting message.",
            [(self.labels(queue_name=k), v) for k, v in sorted(snap.oldest_age.items())],
        )
        consumers = {**extras.consumers, **snap.consumers}
        self._gauge_family(
            out,
            f"{self.prefix}active_consumer_count",
            "The number of active consumer in broker queue.",
            [(q[name], consumers.get(name, 0)) for name in queues if name in snap.lengths],
        )
        arrivals, completions = state.arrivals, state.completions
        rates = []
        for name in queues:
            arrival = arrivals[name].per_second(now) if name in arrivals else 0.0
            completion = completions[name].per_second(now) if name in completions else 0.0
            rates.append((name, arrival, completion))
        self._gauge_family(
            out,
            "fleetops_queue_arrival_rate",
            "Tasks sent to the queue per second over the last minute.",
            [(q[name], a) for name, a, _c in rates],
        )
        self._gauge_family(
            out,
            "fleetops_queue_completion_rate",
            "Tasks finished from the queue per second over the last minute.",
            [(q[name], c) for name, _a, c in rates],
        )
        drains = []
        for name, arrival, completion in rates:
            if name not in snap.lengths:
                continue
            length = snap.length(name)
            if length == 0:
                drains.append((q[name], 0.0))
            elif completion > arrival:
                drains.append((q[name], length / (completion - arrival)))
            else:
                drains.append((q[name], math.inf))
        self._gauge_family(
            out,
            "fleetops_queue_drain_seconds",
            "Estimated time to drain the queue; +Inf when it is not draining.",
            drains,
        )
        self._gauge_family(
            out,
            "fleetops_dead_letter_length",
            "Entries in the dead-letter queue, by the queue the task came from.",
            [(self.labels(queue_name=k), v) for k, v in sorted(snap.dead_letters.items())],
        )

    def _broker_management(self, out: list[str], snap: QueueSnapshot) -> None:
        """RabbitMQ's management API: whether it gave this poll's numbers (no sample on other
        brokers), and its failed or hostile answers by reason (docs/exporter.md, "RabbitMQ")."""
        up = [] if snap.management_up is None else [(self.labels(), snap.management_up)]
        self._gauge_family(
            out,
            "fleetops_broker_management_up",
            "1 when the RabbitMQ management API gave the queue numbers, 0 when AMQP did"
            " (no unacknowledged counts nor message ages).",
            up,
        )
        self._gauge_family(
            out,
            "fleetops_broker_management_errors_total",
            "Failed or hostile answers of the RabbitMQ management API, by reason.",
            [(self.labels(reason=k), v) for k, v in sorted(snap.management_errors.items())],
            kind="counter",
        )

    def _workers(self, out: list[str], state: FleetState, now: float) -> None:
        workers = sorted(state.workers.items())
        if state.worker_groups is None:
            h = {host: self.labels(hostname=host) for host, _w in workers}
        else:  # the group the worker's task series count under, to join them
            h = {
                host: self.labels(hostname=host, worker_group=state.worker_group(host) or host)
                for host, _w in workers
            }
        self._gauge_family(
            out,
            f"{self.prefix}worker_up",
            "Indicates if a worker has recently sent a heartbeat.",
            [(h[k], int(state.worker_up(w, now))) for k, w in workers],
        )
        self._gauge_family(
            out,
            f"{self.prefix}worker_tasks_active",
            "The number of tasks the worker is currently processing",
            [(h[k], w.active if state.worker_up(w, now) else 0) for k, w in workers],
        )
        self._gauge_family(
            out,
            "fleetops_worker_heartbeat_age_seconds",
            "Seconds since the worker was last heard from.",
            [(h[k], round(max(0.0, now - w.last_seen), 3)) for k, w in workers],
        )
        self._gauge_family(
            out,
            "fleetops_worker_stopped_cleanly",
            # celery_worker_up is 0 either way (kept as celery-exporter has it); this tells a
            # scale-down (worker-offline sent) from a crash, so CeleryWorkerDown can skip it.
            "1 after the worker announced its shutdown (worker-offline); 0 while it runs or if"
            " it went silent without one.",
            [(h[k], int(w.offline)) for k, w in workers],
        )
        self._gauge_family(
            out,
            "fleetops_worker_processed_total",
            "Tasks processed by the worker (from its heartbeats).",
            [(h[k], w.processed) for k, w in workers],
            kind="counter",
        )
        for metric, attr, help_text in (
            ("fleetops_worker_pool_size", "pool_size", "Pool processes of the worker."),
            (
                "fleetops_worker_memory_rss_bytes",
                "rss_bytes",
                "Resident memory of the worker, main process plus pool children.",
            ),
            (
                "fleetops_worker_memory_limit_bytes",
                "memory_limit_bytes",
                "Memory limit of the worker: its cgroup limit, else the host's memory.",
            ),
            (
                "fleetops_worker_memory_percent",
                "memory_percent",
                "Resident memory as a percent of the limit.",
            ),
        ):
            self._gauge_family(
                out,
                metric,
                help_text,
                [(h[k], getattr(w, attr)) for k, w in workers if getattr(w, attr) is not None],
            )

    def _beat(self, out: list[str], state: FleetState) -> None:
        entries = sorted(state.beat.items())
        n = {name: self.labels(name=name) for name, _b in entries}
        self._gauge_family(
            out,
            "fleetops_beat_next_run_timestamp_seconds",
            "Next time Beat expects to send the periodic task (in the past while it is late).",
            [(n[k], b.next_run) for k, b in entries if b.next_run is not None],
        )
        self._gauge_family(
            out,
            "fleetops_beat_last_run_timestamp_seconds",
            "Last time Beat sent the periodic task; absent before its first run.",
            [(n[k], b.last_run) for k, b in entries if b.last_run is not None],
        )
        self._gauge_family(
            out,
            "fleetops_beat_interval_seconds",
            "Expected interval of the periodic task.",
            [(n[k], b.interval) for k, b in entries if b.interval is not None],
        )
        self._gauge_family(
            out,
            "fleetops_beat_entry_info",
            "1 for each entry of Beat's schedule, labelled with the task it sends.",
            [(self.labels(name=k, task=b.task), 1) for k, b in entries if b.task is not None],
        )

    def _thresholds(self, out: list[str], thresholds: Thresholds) -> None:
        self._gauge_family(
            out,
            "fleetops_breaking_point",
            "Configured threshold of a signal (fleetops/breaking_points.toml).",
            [(self.labels(signal=s, level=lv), v) for s, lv, v in thresholds.breaking_points],
        )
        self._gauge_family(
            out,
            "fleetops_objective",
            "Configured objective (fleetops/breaking_points.toml).",
            [(self.labels(objective=o), v) for o, v in thresholds.objectives],
        )

    def _self_monitoring(
        self, out: list[str], state: FleetState, extras: Extras, wall: float
    ) -> None:
        def by(label: str, values: dict[str, int]) -> list[tuple[str, float | int]]:
            return [(self.labels(**{label: k}), v) for k, v in sorted(values.items())]

        plain = self.labels()
        dropped = dict(state.dropped)
        dropped["overflow"] = dropped.get("overflow", 0) + extras.overflow_dropped
        lag = max(0.0, wall - state.last_event_ts) if state.last_event_ts else math.nan
        families: list[tuple[str, str, list, str]] = [
            (
                "fleetops_exporter_events_total",
                "Events consumed, by event type.",
                by("type", state.events_by_type),
                "counter",
            ),
            (
                "fleetops_exporter_events_rejected_total",
                "Events dropped because they could not be used, by reason.",
                by("reason", extras.rejected),
                "counter",
            ),
            (
                "fleetops_exporter_events_corrected_total",
                "Fields repaired in events that were kept (timestamps clamped, numbers out of"
                " range left out, texts cut), by reason.",
                by("reason", extras.corrected),
                "counter",
            ),
            *self._health_families(extras),
            (
                "fleetops_exporter_label_values",
                "Distinct values held per label; capped by FLEETOPS_EXPORTER_MAX_<LABEL>S.",
                by("label", {k: len(v) for k, v in state.labels.items()}),
                "gauge",
            ),
            (
                "fleetops_exporter_label_overflow_total",
                "Events whose label value was reported as __overflow__ because the cap was full.",
                by("label", {k: v.overflowed for k, v in state.labels.items()}),
                "counter",
            ),
            (
                "fleetops_exporter_queues_not_polled",
                "Declared queues the poller skipped because of FLEETOPS_EXPORTER_MAX_QUEUES.",
                [(plain, extras.skipped_queues)],
                "gauge",
            ),
            (
                "fleetops_exporter_event_anomalies_total",
                "Events applied with care: duplicates, out of order, clock skew, unknown task.",
                by("kind", state.anomalies),
                "counter",
            ),
            (
                "fleetops_exporter_event_lag_seconds",
                "Now minus the timestamp of the newest event applied.",
                [(plain, round(lag, 6))],
                "gauge",
            ),
            (
                "fleetops_exporter_events_dropped_total",
                "Events lost: overflow of the exporter's buffer, missed while re-subscribing.",
                by("reason", dropped),
                "counter",
            ),
            (
                "fleetops_exporter_broker_reconnects_total",
                "Reconnects of the event stream to the broker.",
                [(plain, extras.status.reconnects)],
                "counter",
            ),
            (
                "fleetops_exporter_broker_up",
                "1 while the broker answers the poller and the event stream is connected.",
                [(plain, int(extras.snapshot.ok and extras.status.connected))],
                "gauge",
            ),
            (
                "fleetops_exporter_event_stream_up",
                "1 while the event stream is connected.",
                [(plain, int(extras.status.connected))],
                "gauge",
            ),
            (
                "fleetops_exporter_series",
                "Series held for tasks, workers and Beat entries.",
                [(plain, state.series_count)],
                "gauge",
            ),
            (
                "fleetops_exporter_series_limit_hits_total",
                "Series refused because of the cap.",
                [(plain, state.series_limit_hits)],
                "counter",
            ),
            (
                "fleetops_exporter_tasks_tracked",
                "Tasks in flight whose sent event is remembered (bounded).",
                [(plain, len(state.tasks))],
                "gauge",
            ),
            (
                "fleetops_exporter_tasks_waiting_for_sent",
                "Tasks whose events arrived before their task-sent: held up to the reorder window.",
                [(plain, len(state.parked))],
                "gauge",
            ),
            (
                "fleetops_exporter_scrape_duration_seconds",
                "Time to render the previous /metrics answer.",
                [(plain, round(extras.last_scrape_seconds, 6))],
                "gauge",
            ),
        ]
        for metric, help_text, samples, kind in families:
            self._gauge_family(out, metric, help_text, samples, kind=kind)
