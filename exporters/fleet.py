"""Processes the exporters add to the local fleet: Flower, our exporter, the history recorder."""

from __future__ import annotations

from fleetops.fleet.spec import FleetContext, ProcessSpec
from fleetops.plugins import hooks

PARTS = ["exporters.metrics.fleet:processes", "exporters.history.fleet:processes"]


def processes(ctx: FleetContext) -> list[ProcessSpec]:
    specs: list[ProcessSpec] = []
    for part in hooks(PARTS):
        specs.extend(part(ctx))
    return specs
