"""Periodic tasks as the exporter sees them: last run, next run, missed runs."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from console.metrics import exporter_selector
from console.sources.prometheus import Prometheus
from fleetops.breaking_points import BreakingPoints

LAST_RUN = "fleetops_beat_last_run_timestamp_seconds"
INTERVAL = "fleetops_beat_interval_seconds"


@dataclass(frozen=True)
class BeatEntry:
    name: str
    interval: float
    last_run: float
    next_run: float
    missed: int  # runs due but not sent, counted once it is later than the objective allows


def entries(
    prom: Prometheus, points: BreakingPoints, *, now: float | None = None
) -> list[BeatEntry]:
    sel = exporter_selector(points)
    last = prom.by_label(f"max by (name) ({LAST_RUN}{{{sel}}})", "name")
    interval = prom.by_label(f"max by (name) ({INTERVAL}{{{sel}}})", "name")
    now = time.time() if now is None else now
    grace = points.objectives.beat_missed_after_intervals
    found = []
    for name in sorted(last):
        every = interval.get(name, 0.0)
        late = now - last[name]
        missed = math.floor(late / every) if every > 0 and late > every * grace else 0
        found.append(BeatEntry(name, every, last[name], last[name] + every, missed))
    return found
