"""The fleet in data-flow order. Each component adds its processes; later ones see the
endpoints of earlier ones (Prometheus scrapes the exporter, the console reads Prometheus)."""

from __future__ import annotations

from collections.abc import Callable

from fleetops.fleet.spec import FleetContext, ProcessSpec
from fleetops.plugins import hooks

Provider = Callable[[FleetContext], list[ProcessSpec]]

# workers -> broker -> exporter/Flower -> Prometheus -> Grafana/console/Alertmanager -> pager
PROVIDERS: list[str] = [
    "fleetops.fleet.broker:processes",
    "workers.fleet:processes",
    "exporters.fleet:processes",
    "alerts.fleet:processes",
    "console.fleet:processes",
]


def assemble(ctx: FleetContext) -> list[ProcessSpec]:
    specs: list[ProcessSpec] = []
    provider: Provider
    for provider in hooks(PROVIDERS):
        specs.extend(provider(ctx))
    return specs
