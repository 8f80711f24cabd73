"""Alertmanager on its own, with a configuration of the test's, started from the fleet's spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alerts.fleet import alertmanager_spec
from alerts.stack import StackFiles
from alerts.yamlout import dump
from fleetops.fleet.spec import free_port
from tests.processes import Processes


def start_alertmanager(processes: Processes, config: dict[str, Any]) -> str:
    """A ready Alertmanager routing by ``config``, on a free port; its URL."""
    directory = processes.run_dir / "alertmanager"
    (directory / "data").mkdir(parents=True)
    config_file = directory / "alertmanager.yml"
    config_file.write_text(dump(config))
    # Only Alertmanager's own files: no Prometheus or pager runs beside it.
    files = StackFiles(Path(), Path(), config_file, directory / "data", Path())
    spec = alertmanager_spec(files, free_port())
    assert spec.url is not None
    processes.start(spec)
    return spec.url
