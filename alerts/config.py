"""The ``[alerts]`` section of the breaking points file, validated before anything is generated."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from fleetops.breaking_points import BreakingPoints
from fleetops.errors import ConfigError

_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def _prometheus_duration(value: str) -> str:
    if value != "0s" and not _DURATION.match(value):
        raise ValueError(f"{value!r} is not a Prometheus duration such as 30s, 5m or 1h30m")
    return value


def _label_matchers(value: str) -> str:
    # One or more `label op "value"` separated by commas: enough to catch a missing quote.
    matcher = r'\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"(?:[^"\\]|\\.)*"\s*'
    if value and not re.fullmatch(rf"{matcher}(,{matcher})*", value):
        raise ValueError(f'{value!r} is not a list of label matchers such as job="celery"')
    return value


Duration = Annotated[str, AfterValidator(_prometheus_duration)]
Matchers = Annotated[str, AfterValidator(_label_matchers)]


def duration_seconds(value: str) -> float:
    return sum(
        int(amount) * _UNIT_SECONDS[unit]
        for amount, unit in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", value)
    )


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Selectors(_Section):
    exporter: Matchers = 'job="fleetops-exporter"'
    flower: Matchers = 'job="flower"'
    recorder: Matchers = 'job="fleetops-recorder"'
    work_queues: Matchers = 'queue_name!="dead_letter"'


class Backlog(_Section):
    lookback: Duration = "15m"
    horizon: Duration = "30m"


class Drain(_Section):
    latency_level: Literal["warning", "critical", "breaking"] = "warning"
    min_depth: int = Field(100, ge=0)


class Events(_Section):
    max_lag: Duration = "2m"
    window: Duration = "10m"


class History(_Section):
    # FleetopsHistoryEventsDropped: any drop within this window keeps the alert firing.
    dropped_window: Duration = "5m"


class PrometheusSection(_Section):
    scrape_interval: Duration = "15s"
    evaluation_interval: Duration = "15s"
    exporter_target: str = "127.0.0.1:9808"
    flower_target: str = "127.0.0.1:5555"
    recorder_target: str = "127.0.0.1:9818"
    prometheus_target: str = "127.0.0.1:9090"
    alertmanager_target: str = "127.0.0.1:9093"


class AlertmanagerSection(_Section):
    group_wait: Duration = "30s"
    group_interval: Duration = "5m"
    repeat_interval: Duration = "4h"
    pager_webhook_url: str = "http://127.0.0.1:9095/page"
    ticket_webhook_url: str = "http://127.0.0.1:9095/ticket"
    watchdog_webhook_url: str = "http://127.0.0.1:9095/watchdog"
    pagerduty_routing_key_file: str = ""
    # Bearer token for the pager webhook, read by Alertmanager at send time; empty: none.
    pager_webhook_token_file: str = ""


class AlertsConfig(_Section):
    runbook_url_base: str = "http://127.0.0.1:9095/runbooks"
    dashboard_url_base: str = "http://127.0.0.1:3000"
    disabled: list[str] = Field(default_factory=list)
    selectors: Selectors = Selectors()
    for_: dict[str, Duration] = Field(default_factory=dict, alias="for")
    backlog: Backlog = Backlog()
    drain: Drain = Drain()
    events: Events = Events()
    history: History = History()
    prometheus: PrometheusSection = PrometheusSection()
    alertmanager: AlertmanagerSection = AlertmanagerSection()

    def hold_for(self, alert: str, default: str) -> str:
        return self.for_.get(alert, default)

    def with_overrides(self, **changes: object) -> AlertsConfig:
        """A copy with top-level fields replaced (e.g. the fleet's own runbook URL base)."""
        return self.model_copy(update={k: v for k, v in changes.items() if v is not None})


def load_alerts_config(points: BreakingPoints, source: str = "breaking points") -> AlertsConfig:
    try:
        return AlertsConfig.model_validate(points.extra_section("alerts"))
    except ValidationError as exc:
        raise ConfigError.from_validation(exc, source=f"{source} [alerts]") from exc
