"""What the pages read from Prometheus: the metric names of docs/metrics.md and the recording
rules of alerts/, with the exporter selector and thresholds from the breaking points."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from alerts import recording
from alerts.replicas import freshest, one
from console.apps import with_app
from console.sources.prometheus import Prometheus
from fleetops.apps import APP_LABEL, check_app_name
from fleetops.breaking_points import BreakingPoints, Level


def exporter_selector(points: BreakingPoints, app: str | None = None) -> str:
    """The exporter's series, picked as the alerts pick them ([alerts.selectors] exporter), of
    ``app`` when one is chosen (console/apps.py: the one place the app matcher is made)."""
    return with_app(points.alerts.selectors.exporter, app)


def grouping(label: str, per_app: bool) -> tuple[str, ...]:
    """The labels a per-queue (or per-worker) query groups by: with several apps shown at once
    also the app, so two apps' queues (workers) of one name stay two rows, never one sum."""
    return (APP_LABEL, label) if per_app else (label,)


def recorded(name: str, app: str | None, per_app: bool = False) -> str:
    """A recording rule's series per queue (alerts/recording.py), of ``app`` when one is chosen
    (per app and queue with ``per_app``).

    The largest per queue: a queue's series of several replicas, the worse is the one to see."""
    matchers = with_app("", app)
    by = ", ".join(grouping("queue_name", per_app))
    return f"max by ({by}) ({name}{{{matchers}}})" if matchers else f"max by ({by}) ({name})"


def row_app(value: str) -> str | None:
    """A series' ``app`` label as a row's app: None when empty or not an app name (it goes
    into links and onto the page only when it is one)."""
    try:
        return check_app_name(value) if value else None
    except ValueError:
        return None


def per_queue(
    prom: Prometheus, aggregation: str, metric: str, selector: str, per_app: bool = False
) -> dict[tuple[str | None, str], float]:
    """One number per (app, queue); the app is None unless ``per_app``."""
    labels = grouping("queue_name", per_app)
    found = prom.by_labels(
        f"{aggregation} by ({', '.join(labels)}) ({one(f'{metric}{{{selector}}}')})", labels
    )
    return {(row_app(key[0]) if per_app else None, key[-1]): value for key, value in found.items()}


@dataclass(frozen=True)
class QueueState:
    queue: str
    depth: float
    band: Level
    arrival_rate: float  # messages/s
    completion_rate: float  # messages/s
    drain_seconds: float  # inf when not draining
    wait_seconds: float  # how long a task enqueued now waits before it starts
    p95_latency: float | None  # seconds, None when nothing finished lately
    latency_band: Level | None
    consumers: float
    app: str | None = None  # set when several apps are shown at once (per_app)


def wait_for_new_task(depth: float, completion_rate: float) -> float:
    """Every message ahead of it must finish first (FIFO within a queue)."""
    if depth <= 0:
        return 0.0
    return depth / completion_rate if completion_rate > 0 else math.inf


def minutes_text(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "n/a"
    if math.isinf(seconds):
        return "never at this rate"
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def work_queue_selector(points: BreakingPoints, app: str | None = None) -> str:
    """The exporter's series of queues that workers consume (not the dead-letter queue)."""
    selectors = points.alerts.selectors
    own = ", ".join(part for part in (selectors.exporter, selectors.work_queues) if part)
    return with_app(own, app)


def queue_states(
    prom: Prometheus, points: BreakingPoints, *, per_app: bool = False
) -> list[QueueState]:
    """One state per queue; with ``per_app`` (several apps shown at once) one per app and
    queue: 600 messages in two apps' ``images`` are two queues of 600, not one of 1,200."""
    sel = work_queue_selector(points, prom.app)
    by = ", ".join(labels := grouping("queue_name", per_app))

    def fleet(metric: str) -> str:
        # One copy per series however many exporter replicas serve it, as the alerts read it.
        return one(f"{metric}{{{sel}}}")

    found = prom.many_by(
        {
            "depth": f"sum by ({by}) ({fleet('celery_queue_length')})",
            "arrival": f"sum by ({by}) ({fleet('fleetops_queue_arrival_rate')})",
            "completion": f"sum by ({by}) ({fleet('fleetops_queue_completion_rate')})",
            # The shortest estimate, as CeleryQueueDrainTooSlow reads it.
            "drain": f"max by ({by}) (" + freshest(f"fleetops_queue_drain_seconds{{{sel}}}") + ")",
            "consumers": f"sum by ({by}) ({fleet('celery_active_consumer_count')})",
            # Recorded per queue by alerts/recording.py, as the latency alerts read it.
            "p95": recorded(recording.LATENCY_P95, prom.app, per_app),
        },
        labels,
    )
    depth, arrival, completion = found["depth"], found["arrival"], found["completion"]
    drain, consumers, p95 = found["drain"], found["consumers"], found["p95"]
    states = []
    for key in sorted(set(depth) | set(arrival) | set(completion)):
        d, done = depth.get(key, 0.0), completion.get(key, 0.0)
        latency = p95.get(key)
        queue = key[-1]
        states.append(
            QueueState(
                app=row_app(key[0]) if per_app else None,
                queue=queue,
                depth=d,
                band=points.queue_depth.level_of(d),
                arrival_rate=arrival.get(key, 0.0),
                completion_rate=done,
                drain_seconds=drain.get(key, 0.0 if d == 0 else math.inf),
                wait_seconds=wait_for_new_task(d, done),
                p95_latency=latency,
                latency_band=None if latency is None else points.task_latency.level_of(latency),
                consumers=consumers.get(key, 0.0),
            )
        )
    return states


@dataclass(frozen=True)
class WorkerState:
    hostname: str
    up: bool
    memory_percent: float | None
    memory_band: Level | None
    heartbeat_age: float | None
    active: float
    processed: float
    pool_size: float | None
    app: str | None = None  # set when several apps are shown at once (per_app)


def worker_states(
    prom: Prometheus, points: BreakingPoints, *, per_app: bool = False
) -> list[WorkerState]:
    """One state per worker; with ``per_app`` one per app and worker name."""
    sel = exporter_selector(points, prom.app)
    by = ", ".join(labels := grouping("hostname", per_app))

    names = {
        "up": "celery_worker_up",
        "memory": "fleetops_worker_memory_percent",
        "age": "fleetops_worker_heartbeat_age_seconds",
        "active": "celery_worker_tasks_active",
        "processed": "fleetops_worker_processed_total",
        "pool": "fleetops_worker_pool_size",
    }
    # The largest copy of each across exporter replicas; the heartbeat age is the smallest,
    # as heard by the replica that heard the worker last.
    found = prom.many_by(
        {
            key: f"{'min' if key == 'age' else 'max'} by ({by}) ({metric}{{{sel}}})"
            for key, metric in names.items()
        },
        labels,
    )
    up, memory, age = found["up"], found["memory"], found["age"]
    active, processed, pool = found["active"], found["processed"], found["pool"]
    states = []
    for key in sorted(set(up) | set(memory)):
        mem = memory.get(key)
        states.append(
            WorkerState(
                app=row_app(key[0]) if per_app else None,
                hostname=key[-1],
                up=up.get(key, 0.0) >= 1,
                memory_percent=mem,
                memory_band=None if mem is None else points.worker_memory.level_of(mem),
                heartbeat_age=age.get(key),
                active=active.get(key, 0.0),
                processed=processed.get(key, 0.0),
                pool_size=pool.get(key),
            )
        )
    return states


def workers_named(workers: Sequence[WorkerState], name: str) -> list[WorkerState]:
    """The workers called ``name``: with several apps shown at once one per app that runs a
    worker of that name (celery@x of billing and of shop), each its own worker to focus on."""
    return [w for w in workers if w.hostname == name]


# The window of the failure ratio the Overview draws: the long window of the fastest page.
FAILURE_WINDOW = "1h"


def failure_ratios(
    prom: Prometheus, *, per_app: bool = False
) -> dict[tuple[str | None, str], float]:
    """Failed per completed task per (app, queue) over FAILURE_WINDOW, as the burn-rate alerts
    read it (recorded by alerts/recording.py; a queue that completed nothing has no ratio). The
    app is None unless ``per_app``: then one app's failing queue is never shown as another's."""
    labels = grouping("queue_name", per_app)
    expr = recorded(recording.failure_ratio(FAILURE_WINDOW), prom.app, per_app)
    return {
        (row_app(key[0]) if per_app else None, key[-1]): value
        for key, value in prom.by_labels(expr, labels).items()
    }


def depth_expr(points: BreakingPoints, app: str | None = None, per_app: bool = False) -> str:
    """Depth per queue (per app and queue with ``per_app``), every queue of the exporter (the
    dead-letter queue too)."""
    sel = exporter_selector(points, app)
    by = ", ".join(grouping("queue_name", per_app))
    return f"sum by ({by}) ({one(f'celery_queue_length{{{sel}}}')})"


def memory_expr(points: BreakingPoints, app: str | None = None) -> str:
    """Memory percent per worker, the largest copy across exporter replicas. Keyed by worker
    name only: a worker focused among several apps passes its own ``app``."""
    sel = exporter_selector(points, app)
    return f"max by (hostname) (fleetops_worker_memory_percent{{{sel}}})"


# Who worked on a queue lately: Prometheus has no worker-to-queue binding, but every task a
# worker receives is counted with both labels.
RECENT_WINDOW = "1h"


def received_by_queue_and_worker(
    prom: Prometheus, points: BreakingPoints
) -> dict[str, dict[str, float]]:
    """Tasks each worker received from each queue over RECENT_WINDOW: {queue: {worker: n}}."""
    sel = exporter_selector(points, prom.app)
    expr = (
        "sum by (queue_name, hostname) ("
        + one(f"increase(celery_task_received_total{{{sel}}}[{RECENT_WINDOW}])")
        + ")"
    )
    found: dict[str, dict[str, float]] = {}
    for sample in prom.query(expr):
        if math.isnan(sample.value) or sample.value <= 0:
            continue
        queue, host = sample.labels.get("queue_name", ""), sample.labels.get("hostname", "")
        found.setdefault(queue, {})[host] = sample.value
    return found
