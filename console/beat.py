"""Every entry of Beat's schedule as the exporter reports it: next expected run, last run,
lateness and missed runs, worst first.

The schedule reaches the console only through the metrics (Beat announces it as events, the
exporter turns them into ``fleetops_beat_*``): the console may run on any host, and never reads
the workers' configuration or Beat's schedule file.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from console.durations import duration_text
from console.metrics import exporter_selector
from console.sources.prometheus import Prometheus
from fleetops.breaking_points import BreakingPoints

LAST_RUN = "fleetops_beat_last_run_timestamp_seconds"
NEXT_RUN = "fleetops_beat_next_run_timestamp_seconds"
INTERVAL = "fleetops_beat_interval_seconds"
ENTRY_INFO = "fleetops_beat_entry_info"
# Past this a count means "the schedule stopped long ago"; it also keeps absurd inputs (an
# interval of 1e-300 s) from overflowing.
MAX_MISSED = 10**9
# Times outside these years are not dates any clock of the fleet can have meant.
_EARLIEST, _LATEST = 0.0, 253_402_300_799.0  # 1970 to 9999


@dataclass(frozen=True)
class BeatEntry:
    name: str
    task: str | None
    interval: float | None
    last_run: float | None  # None before its first run
    next_run: float | None  # None only when neither the schedule nor a run said it
    late: float  # seconds past the next expected run, 0 while it is not due
    missed: int  # runs due but not sent, counted once later than the objective allows

    @property
    def worst_first(self) -> tuple:
        return (-self.missed, -self.late, self.name)


def missed_runs(late: float, every: float | None, grace: float) -> int:
    """Runs due but not sent, once the entry is late by more than ``grace`` intervals counted
    from its last run (as CeleryBeatMissedRun): the expected run itself plus one per interval
    since. 0 when it is within the grace or has no interval to be late against."""
    if not every or every <= 0 or late <= every * (grace - 1):
        return 0
    runs = late / every
    return MAX_MISSED if not runs < MAX_MISSED else math.floor(runs) + 1


def lateness(next_run: float | None, now: float) -> float:
    return max(0.0, now - next_run) if next_run is not None else 0.0


def entries(
    prom: Prometheus, points: BreakingPoints, *, now: float | None = None
) -> list[BeatEntry]:
    sel = exporter_selector(points, prom.app)
    found = prom.many(
        {
            "last": f"max by (name) ({LAST_RUN}{{{sel}}})",
            "next": f"max by (name) ({NEXT_RUN}{{{sel}}})",
            "interval": f"max by (name) ({INTERVAL}{{{sel}}})",
        },
        "name",
    )
    tasks = {
        s.labels.get("name", ""): s.labels.get("task")
        for s in prom.query(f"max by (name, task) ({ENTRY_INFO}{{{sel}}})")
    }
    # Prometheus serves what any exporter sent: a time or interval that is not a usable
    # number is treated as unknown rather than allowed to break the page.
    last = {k: v for k, v in found["last"].items() if _EARLIEST <= v <= _LATEST}
    upcoming = {k: v for k, v in found["next"].items() if _EARLIEST <= v <= _LATEST}
    interval = {k: v for k, v in found["interval"].items() if 0 < v < math.inf}
    now = time.time() if now is None else now
    grace = points.objectives.beat_missed_after_intervals
    listed = []
    for name in set(last) | set(upcoming) | set(interval) | set(tasks):
        every = interval.get(name)
        last_run = last.get(name)
        next_run = upcoming.get(name)
        if next_run is None and last_run is not None and every:
            next_run = last_run + every  # an exporter that predates the schedule announcements
        late = lateness(next_run, now)
        listed.append(
            BeatEntry(
                name=name,
                task=tasks.get(name),
                interval=every,
                last_run=last_run,
                next_run=next_run,
                late=late,
                missed=missed_runs(late, every, grace),
            )
        )
    return sorted(listed, key=lambda e: e.worst_first)


def when_text(stamp: float | None, missing: str) -> str:
    """A time as the page shows it (UTC, to the second), or ``missing``."""
    if stamp is None or not _EARLIEST <= stamp <= _LATEST:
        return missing
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def due_text(entry: BeatEntry, now: float) -> str:
    """When the next run is expected, in words: "in 42 s", "due", "late by 3 min"."""
    if entry.next_run is None:
        return "unknown"
    if entry.late >= 1:  # Beat sends a due task within its tick: less is not late
        return f"late by {duration_text(entry.late)}"
    ahead = entry.next_run - now
    return f"in {duration_text(ahead)}" if ahead >= 1 else "due"
