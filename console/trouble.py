"""What is in trouble, worst first: the first thing the Overview shows.

Queues, workers and firing alerts whose level is not safe, in one list sorted by level
(breaking, critical, warning), each naming the page that shows its cause.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from console import links
from console.charts import LEVEL_RANK, badge, finite, latency_bands, signal_bands
from console.metrics import QueueState, WorkerState, minutes_text, row_app
from console.sources.alertmanager import Alert
from fleetops.apps import APP_LABEL
from fleetops.breaking_points import BreakingPoints, Level

# An alert's severity label as a level (conventions: critical pages, warning tickets; info is
# routed nowhere, so it is not trouble to look at first).
ALERT_LEVELS = {"critical": Level.CRITICAL, "warning": Level.WARNING}
# CeleryWorkerDown is a warning: a worker that stopped is a ticket unless queues back up,
# which their own rows then show.
WORKER_DOWN = Level.WARNING


@dataclass(frozen=True)
class Trouble:
    level: Level
    kind: str  # queue, worker, alert
    name: str
    what: str  # Markdown: the measure against its band, with links to the cause

    def markdown(self) -> str:
        return f"- {badge(self.level)} {self.what}"


def _of_app(app: str | None) -> str:
    # With several apps shown at once a row names its app (plain: it is a label value).
    return "" if app is None else f" of app {plain(app)}"


def _queue_link(name: str, app: str | None = None) -> str:
    # Links of another app's row open that app (links.app_of), not the page's choice.
    with links.app_of(app):
        return (
            f"queue {links.markdown(name, links.queue(name))}{_of_app(app)} "
            f"({links.markdown('tasks', links.tasks(queue=name))}, "
            f"{links.markdown('failures', links.failures(queue=name))})"
        )


def _worker_link(name: str, app: str | None = None) -> str:
    with links.app_of(app):
        return (
            f"worker {links.markdown(name, links.worker(name))}{_of_app(app)} "
            f"({links.markdown('tasks', links.tasks(worker=name))})"
        )


def troubles(
    queues: Sequence[QueueState],
    workers: Sequence[WorkerState],
    alerts: Sequence[Alert],
    points: BreakingPoints,
    *,
    per_app: bool = False,
) -> list[Trouble]:
    """``per_app``: several apps are shown at once, so an alert's row names its own app and
    links to it, as the queue and worker rows do (theirs come with the rows)."""
    found: list[Trouble] = []
    depth = signal_bands(points.queue_depth)
    latency = latency_bands(points)
    memory = signal_bands(points.worker_memory)
    for q in queues:
        d = finite(q.depth)
        if d is not None and (level := depth.level_of(d)) is not Level.SAFE:
            found.append(
                Trouble(
                    level,
                    "queue",
                    q.queue,
                    f"{_queue_link(q.queue, q.app)}: {d:,.0f} messages waiting ({level.value} from "
                    f"{getattr(depth, level.value):,.0f}); a task enqueued now waits about "
                    f"{minutes_text(q.wait_seconds)}",
                )
            )
        p95 = finite(q.p95_latency)
        if p95 is not None and (level := latency.level_of(p95 / 60)) is not Level.SAFE:
            found.append(
                Trouble(
                    level,
                    "queue",
                    q.queue,
                    f"{_queue_link(q.queue, q.app)}: p95 latency {p95 / 60:.1f} min ({level.value} "
                    f"from {getattr(latency, level.value):g} min)",
                )
            )
    for w in workers:
        if not w.up:
            found.append(
                Trouble(
                    WORKER_DOWN, "worker", w.hostname, f"{_worker_link(w.hostname, w.app)}: down"
                )
            )
        mem = finite(w.memory_percent)
        if mem is not None and (level := memory.level_of(mem)) is not Level.SAFE:
            found.append(
                Trouble(
                    level,
                    "worker",
                    w.hostname,
                    f"{_worker_link(w.hostname, w.app)}: memory {mem:.0f} % of its limit "
                    f"({level.value} from {getattr(memory, level.value):g} %)",
                )
            )
    for alert in alerts:
        level = ALERT_LEVELS.get(alert.severity)
        if alert.state != "active" or level is None:
            continue
        where = []
        if alert.name in links.TASK_FAULT_ALERTS:
            # The alert counts tasks; the page lists them, worst first.
            where.append(links.markdown(links.TASK_FAULTS_TEXT, links.task_faults()))
        # The label is outside text: it names an app only when it is an app name.
        own = row_app(alert.labels.get(APP_LABEL) or "") if per_app else None
        if queue := alert.labels.get("queue_name"):
            where.append(_queue_link(queue, own))
        if host := alert.labels.get("hostname"):
            where.append(_worker_link(host, own))
        if own is not None and not (queue or host):
            where.append(_of_app(own).strip())  # no link to carry it: say it
        found.append(
            Trouble(
                level,
                "alert",
                alert.name,
                f"alert **{links.markdown(alert.name, links.runbook(alert.name))}** "
                f"{' '.join(where)}: {plain(alert.summary)}",
            )
        )
    # Worst first; within a level queues, then workers, then alerts, each by name.
    kinds = {"queue": 0, "worker": 1, "alert": 2}
    return sorted(found, key=lambda t: (-LEVEL_RANK[t.level], kinds[t.kind], t.name))


def plain(text: str) -> str:
    """An alert's summary as text, not Markdown: it comes from outside the console."""
    return "".join("\\" + ch if ch in "[]()\\`*_<>#|:$~" else ch for ch in str(text))
