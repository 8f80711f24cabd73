"""CLI commands of the exporters: ``fleetops exporter`` and ``fleetops recorder``."""

from __future__ import annotations

import typer

from fleetops.plugins import hooks

PARTS = ["exporters.metrics.cli:register", "exporters.history.cli:register"]


def register(app: typer.Typer) -> None:
    for register_part in hooks(PARTS):
        register_part(app)
