"""The ``[alerts]`` section of the breaking points file: its schema and every default.

The shipped ``fleetops/breaking_points.toml`` sets only what differs from these defaults; the
``for`` of each alert defaults to its spec in ``alerts/rules.py``. Every model forbids unknown
keys, so a misspelt key fails with its name instead of being ignored.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from alerts.rules import ALERT_NAMES, DEFAULT_HOLDS
from fleetops import ports
from workers.queues import DEAD_LETTER

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


def _known_alerts(names: list[str]) -> list[str]:
    unknown = sorted(set(names) - set(ALERT_NAMES))
    if unknown:
        raise ValueError(
            f"unknown alert name(s) {', '.join(unknown)}; known: {', '.join(sorted(ALERT_NAMES))}"
        )
    return names


def _remote_write_url(value: str) -> str:
    if value and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise ValueError(f"{value!r} is not an http(s) URL such as http://vm:8428/api/v1/write")
    return value


Duration = Annotated[str, AfterValidator(_prometheus_duration)]
RemoteWriteUrl = Annotated[str, AfterValidator(_remote_write_url)]
Matchers = Annotated[str, AfterValidator(_label_matchers)]
AlertNames = Annotated[list[str], AfterValidator(_known_alerts)]

# Job names of the reference alerts/prometheus.yml, which the default selectors pick.
EXPORTER_JOB = "fleetops-exporter"
FLOWER_JOB = "flower"
RECORDER_JOB = "fleetops-recorder"


def duration_seconds(value: str) -> float:
    return sum(
        int(amount) * _UNIT_SECONDS[unit]
        for amount, unit in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", value)
    )


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Selectors(_Section):
    exporter: Matchers = f'job="{EXPORTER_JOB}"'
    flower: Matchers = f'job="{FLOWER_JOB}"'
    recorder: Matchers = f'job="{RECORDER_JOB}"'
    work_queues: Matchers = f'queue_name!="{DEAD_LETTER}"'


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


class TaskFaults(_Section):
    # CeleryTaskLost, CeleryTaskRanTwice, CeleryTaskEtaBeyondVisibilityTimeout: each lost,
    # repeated or too-far ETA task keeps its alert firing for this long.
    window: Duration = "1h"


class PrometheusSection(_Section):
    scrape_interval: Duration = "15s"
    evaluation_interval: Duration = "15s"
    exporter_target: str = ports.local_target(ports.EXPORTER)
    flower_target: str = ports.local_target(ports.FLOWER)
    recorder_target: str = ports.local_target(ports.RECORDER)
    prometheus_target: str = ports.local_target(ports.PROMETHEUS)
    alertmanager_target: str = ports.local_target(ports.ALERTMANAGER)
    # A remote-write endpoint (VictoriaMetrics: http://<host>:8428/api/v1/write; Thanos Receive,
    # Mimir) that keeps the series for longer and for more Prometheus servers than the local
    # TSDB (docs/dashboards.md, "VictoriaMetrics and other PromQL stores"). Empty: none.
    remote_write_url: RemoteWriteUrl = ""


class AlertmanagerSection(_Section):
    group_wait: Duration = "30s"
    group_interval: Duration = "5m"
    repeat_interval: Duration = "4h"
    pager_webhook_url: str = ports.local_url(ports.PAGER, "/page")
    ticket_webhook_url: str = ports.local_url(ports.PAGER, "/ticket")
    watchdog_webhook_url: str = ports.local_url(ports.PAGER, "/watchdog")
    # Empty: page through the webhook only.
    pagerduty_routing_key_file: str = "/etc/alertmanager/secrets/pagerduty-routing-key"
    # Bearer token for the pager webhook, read by Alertmanager at send time; empty: none.
    pager_webhook_token_file: str = ""


# One field per [alerts.for] key (an alert's name, or name:long_window for the burn-rate pairs),
# defaulting to its spec: an alert name that does not exist is an unknown key, rejected by name.
_HOLD_FIELDS: dict = {key: (Duration, default) for key, default in DEFAULT_HOLDS.items()}
_HoldFields: type[_Section] = create_model("_HoldFields", __base__=_Section, **_HOLD_FIELDS)


class Holds(_HoldFields):
    """``[alerts.for]``: how long each alert's condition must hold before it fires."""

    def of(self, key: str) -> str:
        return getattr(self, key)


class AlertsConfig(_Section):
    runbook_url_base: str = ports.local_url(ports.PAGER, "/runbooks")
    dashboard_url_base: str = ports.local_url(ports.GRAFANA)
    disabled: AlertNames = Field(default_factory=list)
    selectors: Selectors = Selectors()
    for_: Holds = Field(default_factory=Holds, alias="for")
    backlog: Backlog = Backlog()
    drain: Drain = Drain()
    events: Events = Events()
    history: History = History()
    task_faults: TaskFaults = TaskFaults()
    prometheus: PrometheusSection = PrometheusSection()
    alertmanager: AlertmanagerSection = AlertmanagerSection()

    def hold(self, key: str) -> str:
        """The `for` of an alert (its ``AlertSpec.for_key``): overridden, or its default."""
        return self.for_.of(key)

    def with_overrides(self, **changes: object) -> AlertsConfig:
        """A copy with top-level fields replaced (e.g. the fleet's own runbook URL base)."""
        return self.model_copy(update={k: v for k, v in changes.items() if v is not None})
