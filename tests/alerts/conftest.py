"""Shared pieces of the alerting tests: the generated alerts and the tool binaries."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from alerts.catalog import AlertRule
from alerts.generate import enabled_alerts, load_inputs

REPO = Path(__file__).resolve().parents[2]
BREAKING_POINTS = REPO / "fleetops" / "breaking_points.toml"
ALERTS_DIR = REPO / "alerts"
RUNBOOKS_DIR = REPO / "runbooks"
PROMTOOL_DIR = Path(__file__).resolve().parent / "promtool"


def breaking_points_with(path: Path, overrides: str) -> Path:
    """The committed breaking points plus ``overrides`` (TOML tables it does not set yet)."""
    text = BREAKING_POINTS.read_text()
    for table in re.findall(r"^\[[\w.]+\]", overrides, flags=re.MULTILINE):
        # A table set twice is a TOML error: the shipped file sets no [alerts] tables.
        assert f"\n{table}\n" not in text, f"{BREAKING_POINTS} already sets {table}"
    path.write_text(f"{text}\n{overrides.strip()}\n")
    return path


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(f"/usr/bin/{name}")
    if path is None:
        pytest.fail(
            f"{name} is not installed (Debian package prometheus / prometheus-alertmanager)"
        )
    return path


@pytest.fixture(scope="session")
def committed_alerts() -> list[AlertRule]:
    """The alerts of the committed breaking points, ignoring any file set in the environment."""
    points, config = load_inputs(BREAKING_POINTS)
    return enabled_alerts(points, config)


@pytest.fixture(scope="session")
def alert_names(committed_alerts: list[AlertRule]) -> list[str]:
    return sorted({rule.name for rule in committed_alerts})
