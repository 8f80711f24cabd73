"""Processes this component adds to the local fleet: the pager, Alertmanager and Prometheus.

Started in reverse order of the alert flow (pager first), so each one's destination is up
when it starts. Prometheus scrapes the exporter, Flower and the task-history recorder found in
``ctx.endpoints``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field

from alerts.config import Duration
from alerts.stack import (
    StackFiles,
    StackPorts,
    alertmanager_argv,
    pager_argv,
    prometheus_argv,
    render_stack,
)
from exporters.metrics.settings import default_replica
from fleetops import breaking_points
from fleetops import ports as default_ports
from fleetops.fleet.spec import FleetContext, ProcessSpec, http_ready
from fleetops.settings import ENV_PREFIX, FleetSettings, load_settings, shown_as


class AlertsFleetSettings(FleetSettings):
    # Overrides of [alerts.prometheus] / [alerts.alertmanager] for this run only.
    prometheus_scrape_interval: Duration | None = Field(
        None, json_schema_extra=shown_as("[alerts.prometheus] scrape_interval")
    )
    """Prometheus' scrape interval for this run."""
    prometheus_evaluation_interval: Duration | None = Field(
        None, json_schema_extra=shown_as("[alerts.prometheus] evaluation_interval")
    )
    """Prometheus' rule evaluation interval for this run."""
    alertmanager_group_wait: Duration | None = Field(
        None, json_schema_extra=shown_as("[alerts.alertmanager] group_wait")
    )
    """Alertmanager's group_wait for this run."""
    # Written to a 0600 file in the run directory, never to the rendered configuration.
    pagerduty_routing_key: str | None = Field(
        None, repr=False, json_schema_extra=shown_as("unset: the local pager only")
    )
    """PagerDuty Events v2 routing key: set, and pages go to PagerDuty too."""


def host_port(endpoint: str) -> str:
    """``http://127.0.0.1:9808/metrics`` or ``127.0.0.1:9808`` -> ``127.0.0.1:9808``."""
    netloc = urlsplit(endpoint if "//" in endpoint else f"//{endpoint}").netloc
    return netloc


def fleet_settings(env: dict[str, str]) -> AlertsFleetSettings:
    """Settings from the fleet's variables (ctx.env), which need not be in os.environ."""
    given = {
        name: env[ENV_PREFIX + name.upper()]
        for name in AlertsFleetSettings.model_fields
        if ENV_PREFIX + name.upper() in env
    }
    return load_settings(AlertsFleetSettings, **given)


def exporter_replica(env: dict[str, str]) -> str:
    """The replica name the fleet's exporter runs with (its setting, else the default)."""
    return env.get(ENV_PREFIX + "EXPORTER_REPLICA") or default_replica()


def processes(ctx: FleetContext) -> list[ProcessSpec]:
    settings = fleet_settings(ctx.env)
    points = breaking_points.load(ctx.env.get(breaking_points.FILE_ENV))
    config = points.alerts
    ports = StackPorts(
        prometheus=ctx.port(default_ports.PROMETHEUS),
        alertmanager=ctx.port(default_ports.ALERTMANAGER),
        pager=ctx.port(default_ports.PAGER),
    )
    files = render_stack(
        ctx.run_dir / "alerting",
        points=points,
        config=config,
        ports=ports,
        # The fleet's one exporter, labelled with the replica name it logs.
        exporter_targets=[],
        exporter_replicas={exporter_replica(ctx.env): host_port(ctx.endpoints["exporter"])}
        if "exporter" in ctx.endpoints else None,
        flower_targets=[host_port(ctx.endpoints["flower"])] if "flower" in ctx.endpoints else [],
        recorder_targets=[host_port(ctx.endpoints["history_metrics"])]
        if "history_metrics" in ctx.endpoints else [],
        scrape_interval=settings.prometheus_scrape_interval,
        evaluation_interval=settings.prometheus_evaluation_interval,
        group_wait=settings.alertmanager_group_wait,
        pagerduty_routing_key=settings.pagerduty_routing_key,
        host=ctx.host,
    )  # fmt: skip
    ctx.endpoints["pager"] = ctx.url(ports.pager)
    ctx.endpoints["alertmanager"] = ctx.url(ports.alertmanager)
    ctx.endpoints["prometheus"] = ctx.url(ports.prometheus)
    return [
        pager_spec(ports.pager, files.pages_log, host=ctx.host),
        alertmanager_spec(files, ports.alertmanager, host=ctx.host),
        prometheus_spec(files, ports.prometheus, host=ctx.host),
    ]


# One builder a process, so that whatever runs one of them alone runs the fleet's argv.
def pager_spec(port: int, pages_log: Path, host: str = default_ports.LOOPBACK) -> ProcessSpec:
    argv = pager_argv(port, pages_log, host)
    return _served("pager", argv, host, port, "/healthz", "/pages")


def alertmanager_spec(
    files: StackFiles, port: int, host: str = default_ports.LOOPBACK
) -> ProcessSpec:
    return _served("alertmanager", alertmanager_argv(files, port, host), host, port, "/-/ready")


def prometheus_spec(
    files: StackFiles, port: int, resend_delay: str = "1m", host: str = default_ports.LOOPBACK
) -> ProcessSpec:
    argv = prometheus_argv(files, port, resend_delay=resend_delay, host=host)
    return _served("prometheus", argv, host, port, "/-/ready")


def _served(
    name: str, argv: list[str], host: str, port: int, ready: str, shown: str = ""
) -> ProcessSpec:
    """A process serving HTTP on ``host:port`` only: ready once ``ready`` answers."""
    base = default_ports.url(host, port)
    return ProcessSpec(name, argv, ready=http_ready(base + ready), url=base + shown)
