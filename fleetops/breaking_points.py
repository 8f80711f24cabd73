"""Load the breaking points file: the single source of every threshold in the product.

One validated model for the whole file, read by the exporter, alerts, dashboards and console
alike: ``[signals]`` and ``[objectives]`` here, ``[alerts]`` as ``alerts/config.py`` defines it.
Every level forbids unknown keys, so a misspelt section or key fails with its name.
"""

from __future__ import annotations

import os
import tomllib
from enum import StrEnum
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alerts.config import AlertsConfig
from fleetops.errors import ConfigError

DEFAULT_FILE = Path(__file__).with_name("breaking_points.toml")
FILE_ENV = "FLEETOPS_BREAKING_POINTS_FILE"


class Level(StrEnum):
    SAFE = "safe"
    WARNING = "warning"
    CRITICAL = "critical"
    BREAKING = "breaking"


def level_between(value: float, warning: float, critical: float, breaking: float) -> Level:
    """The level of a value given the lower edges of the warning, critical and breaking bands
    (also for bands derived from these, e.g. the console's failure-ratio bands)."""
    if value >= breaking:
        return Level.BREAKING
    if value >= critical:
        return Level.CRITICAL
    if value >= warning:
        return Level.WARNING
    return Level.SAFE


class Signal(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str
    description: str
    unit: str
    warning: float = Field(gt=0)
    critical: float = Field(gt=0)
    breaking: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Signal:
        if not self.warning < self.critical <= self.breaking:
            raise ValueError(
                f"levels must rise: warning ({self.warning}) < critical ({self.critical})"
                f" <= breaking ({self.breaking})"
            )
        return self

    def level_of(self, value: float) -> Level:
        return level_between(value, self.warning, self.critical, self.breaking)

    def thresholds(self) -> dict[Level, float]:
        return {
            Level.WARNING: self.warning,
            Level.CRITICAL: self.critical,
            Level.BREAKING: self.breaking,
        }


class Objectives(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    task_success_ratio: float = Field(gt=0, lt=1)
    beat_missed_after_intervals: float = Field(ge=1)

    @property
    def error_budget(self) -> float:
        return 1 - self.task_success_ratio


class BreakingPoints(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    signals: dict[str, Signal]
    objectives: Objectives
    # Alerting settings, also the selectors and link bases the dashboards and console use.
    alerts: AlertsConfig = AlertsConfig()

    @model_validator(mode="after")
    def _required_signals(self) -> BreakingPoints:
        missing = {"queue_depth", "worker_memory", "task_latency"} - set(self.signals)
        if missing:
            raise ValueError(f"signals missing: {', '.join(sorted(missing))}")
        return self

    @property
    def queue_depth(self) -> Signal:
        return self.signals["queue_depth"]

    @property
    def worker_memory(self) -> Signal:
        return self.signals["worker_memory"]

    @property
    def task_latency(self) -> Signal:
        return self.signals["task_latency"]


def load(path: Path | str | None = None) -> BreakingPoints:
    source = Path(path or os.environ.get(FILE_ENV) or DEFAULT_FILE)
    try:
        raw = tomllib.loads(source.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{FILE_ENV}: breaking points file {source} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    try:
        return BreakingPoints.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError.from_validation(exc, source=str(source)) from exc


@cache
def current() -> BreakingPoints:
    """The breaking points in force for this process (read once)."""
    return load()
