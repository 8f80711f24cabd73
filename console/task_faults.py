"""What the Stuck & orphaned page reads from Prometheus (the exporter's issue-14 metrics of
docs/metrics.md) and the numbers it derives from them with fleetops/task_faults.py.

The console never reads the workers' configuration: the visibility timeout, acks_late, time
limits and stuck bounds reach it as the workers announced them to the exporter. Every value
that is not a usable number (NaN, inf, negative, missing) is treated as unknown, so a hostile
or half-configured source shows "n/a", never an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from alerts.replicas import one
from console.metrics import exporter_selector
from console.sources.history import RECENT_WINDOW
from console.sources.prometheus import Prometheus
from exporters.metrics.settings import ExporterSettings
from fleetops import task_faults
from fleetops.breaking_points import BreakingPoints
from fleetops.settings import field_default

ORPHANED = "fleetops_tasks_orphaned"
STUCK = "fleetops_tasks_stuck"
REPEATED = "fleetops_task_runs_repeated_total"
ORPHANS = "fleetops_task_orphans_total"
ETA_BEYOND = "fleetops_task_eta_beyond_visibility_total"
VISIBILITY_TIMEOUT = "fleetops_broker_visibility_timeout_seconds"
TIME_LIMIT = "fleetops_task_time_limit_seconds"
RUNNING_LONGEST = "fleetops_task_running_longest_seconds"
STUCK_BOUND = "fleetops_task_stuck_bound_seconds"
# The counters are shown over the same window as the history's lists below them.
WINDOW = RECENT_WINDOW
# A worker is down after this long without a heartbeat: the exporter's own default, so the
# page and the exporter's gauges agree on which tasks are orphaned.
WORKER_TIMEOUT = float(field_default(ExporterSettings, "exporter_worker_timeout"))

# The alerts of the page, each with its runbook (runbooks/<name>.md).
ORPHANED_ALERT = "CeleryTaskOrphaned"
LOST_ALERT = "CeleryTaskLost"
STUCK_ALERT = "CeleryTaskStuck"
RAN_TWICE_ALERT = "CeleryTaskRanTwice"
ETA_ALERT = "CeleryTaskEtaBeyondVisibilityTimeout"
NEAR_ALERT = "CeleryTaskRuntimeNearVisibilityTimeout"


def usable(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def count(value: float | None) -> float | None:
    """A count as shown: finite and not negative, else unknown."""
    return value if value is not None and math.isfinite(value) and value >= 0 else None


@dataclass(frozen=True)
class Counts:
    """The top of the page: orphaned and stuck now, and over WINDOW the tasks run twice, lost
    and received with an ETA beyond the visibility timeout. None: Prometheus has no number."""

    orphaned: float | None = None
    stuck: float | None = None
    ran_twice: float | None = None
    lost: float | None = None
    eta_beyond: float | None = None


@dataclass(frozen=True)
class Fleet:
    """What the workers announced through the exporter. Empty when Prometheus is down."""

    counts: Counts = field(default_factory=Counts)
    visibility_timeout: float | None = None  # seconds; None for RabbitMQ or unknown
    acks_late: bool | None = None
    stuck_bounds: dict[str, float] = field(default_factory=dict)  # name -> seconds
    time_limits: dict[str, float] = field(default_factory=dict)  # name -> seconds
    running_longest: dict[str, float] = field(default_factory=dict)  # name -> seconds

    @property
    def redelivery_window(self) -> float:
        return task_faults.redelivery_window(self.visibility_timeout, self.acks_late)

    @property
    def bounds(self) -> dict[str, float]:
        """The stuck bound of every task name the exporter knows one for: its own bound where
        a task of the name runs now (fleetops_task_stuck_bound_seconds), else the announced
        time limit plus its grace (task_faults.stuck_bound). A drained orphan whose name no
        longer runs is judged by the same bound the exporter used, not the 1 h default."""
        from_limits = {
            name: task_faults.stuck_bound(name, bounds={}, time_limit=limit)
            for name, limit in self.time_limits.items()
        }
        return {**from_limits, **self.stuck_bounds}


def _selector(points: BreakingPoints, app: str | None, *more: str) -> str:
    return ", ".join(part for part in (exporter_selector(points, app), *more) if part)


def read(prom: Prometheus, points: BreakingPoints) -> Fleet:
    """Every number of the page, in one round of parallel queries; raises SourceDown."""
    sel = _selector(points, prom.app)
    lost = _selector(points, prom.app, 'outcome="lost"')

    def total(expr: str) -> str:
        # One copy per series across exporter replicas, as the alerts read them.
        return f"sum({one(expr)})"

    found = prom.many(
        {
            "orphaned": total(f"{ORPHANED}{{{sel}}}"),
            "stuck": total(f"{STUCK}{{{sel}}}"),
            "ran_twice": total(f"increase({REPEATED}{{{sel}}}[{WINDOW}])"),
            "lost": total(f"increase({ORPHANS}{{{lost}}}[{WINDOW}])"),
            "eta_beyond": total(f"increase({ETA_BEYOND}{{{sel}}}[{WINDOW}])"),
            "stuck_bounds": f"max by (name) ({STUCK_BOUND}{{{sel}}})",
            "time_limits": f"max by (name) ({TIME_LIMIT}{{{sel}}})",
            "running_longest": f"max by (name) ({RUNNING_LONGEST}{{{sel}}})",
        },
        "name",
    )
    counts = Counts(**{key: count(found[key].get("")) for key in Counts.__dataclass_fields__})
    timeout, acks_late = visibility(prom, sel)

    def per_name(key: str) -> dict[str, float]:
        return {name: value for name, value in found[key].items() if name and usable(value)}

    return Fleet(
        counts=counts,
        visibility_timeout=timeout,
        acks_late=acks_late,
        stuck_bounds=per_name("stuck_bounds"),
        time_limits=per_name("time_limits"),
        running_longest=per_name("running_longest"),
    )


def visibility(prom: Prometheus, sel: str) -> tuple[float | None, bool | None]:
    """The visibility timeout in force (the smallest announced) and whether the workers
    acknowledge late: true when any series says so, the setting that makes the trap bite."""
    samples = prom.query(f"min by (acks_late) ({VISIBILITY_TIMEOUT}{{{sel}}})")
    announced = [(s.value, s.labels.get("acks_late")) for s in samples if usable(s.value)]
    if not announced:
        return None, None
    flags = {flag for _, flag in announced}
    acks_late = True if "true" in flags else False if flags == {"false"} else None
    return min(value for value, _ in announced), acks_late


@dataclass(frozen=True)
class NearTimeout:
    """A task name whose hard time limit or longest current runtime comes within
    task_faults.NEAR_VISIBILITY_TIMEOUT_RATIO of the visibility timeout."""

    name: str
    time_limit: float | None
    running_longest: float | None
    share: float  # the larger of the two, as a share of the visibility timeout


def near_visibility_timeout(fleet: Fleet) -> list[NearTimeout]:
    """Names at risk of being handed out again while they still run, the closest first. Only
    under acks_late (or when unknown): acknowledged early, a running task is not redelivered."""
    timeout = fleet.visibility_timeout
    if not usable(timeout) or fleet.acks_late is False:
        return []
    assert timeout is not None
    found = []
    for name in sorted(set(fleet.time_limits) | set(fleet.running_longest)):
        limit, longest = fleet.time_limits.get(name), fleet.running_longest.get(name)
        share = max(limit or 0.0, longest or 0.0) / timeout
        if share >= task_faults.NEAR_VISIBILITY_TIMEOUT_RATIO:
            found.append(NearTimeout(name, limit, longest, share))
    return sorted(found, key=lambda near: (-near.share, near.name))


def count_text(value: float | None) -> str:
    # increase() extrapolates across its window: a count of events reads as a whole number.
    return "n/a" if value is None else f"{value:,.0f}"
