"""Processes this component adds to the local fleet: the pager, Alertmanager and Prometheus.

Started in reverse order of the alert flow (pager first), so each one's destination is up
when it starts. Prometheus scrapes the exporter, Flower and the task-history recorder found in
``ctx.endpoints``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field

from alerts.config import Duration
from alerts.stack import (
    StackPorts,
    alertmanager_argv,
    pager_argv,
    prometheus_argv,
    render_stack,
)
from fleetops import breaking_points
from fleetops.fleet.spec import FleetContext, ProcessSpec, http_ready
from fleetops.settings import ENV_PREFIX, FleetSettings, load_settings


class AlertsFleetSettings(FleetSettings):
    # Overrides of [alerts.prometheus] / [alerts.alertmanager] for this run only.
    prometheus_scrape_interval: Duration | None = None
    prometheus_evaluation_interval: Duration | None = None
    alertmanager_group_wait: Duration | None = None
    # PagerDuty Events v2 routing key; written to a 0600 file in the run directory.
    pagerduty_routing_key: str | None = Field(None, repr=False)


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


def processes(ctx: FleetContext) -> list[ProcessSpec]:
    settings = fleet_settings(ctx.env)
    points = breaking_points.load(ctx.env.get(breaking_points.FILE_ENV))
    config = points.alerts
    ports = StackPorts(prometheus=ctx.port(9090), alertmanager=ctx.port(9093), pager=ctx.port(9095))
    files = render_stack(
        ctx.run_dir / "alerting",
        points=points,
        config=config,
        ports=ports,
        exporter_targets=[host_port(ctx.endpoints["exporter"])] if "exporter" in ctx.endpoints
        else [],
        flower_targets=[host_port(ctx.endpoints["flower"])] if "flower" in ctx.endpoints else [],
        recorder_targets=[host_port(ctx.endpoints["history_metrics"])]
        if "history_metrics" in ctx.endpoints else [],
        scrape_interval=settings.prometheus_scrape_interval,
        evaluation_interval=settings.prometheus_evaluation_interval,
        group_wait=settings.alertmanager_group_wait,
        pagerduty_routing_key=settings.pagerduty_routing_key,
    )  # fmt: skip
    pager = f"http://127.0.0.1:{ports.pager}"
    alertmanager = f"http://127.0.0.1:{ports.alertmanager}"
    prometheus = f"http://127.0.0.1:{ports.prometheus}"
    ctx.endpoints["pager"] = pager
    ctx.endpoints["alertmanager"] = alertmanager
    ctx.endpoints["prometheus"] = prometheus
    return [
        ProcessSpec(
            "pager",
            pager_argv(ports.pager, files.pages_log),
            ready=http_ready(f"{pager}/healthz"),
            url=f"{pager}/pages",
        ),
        ProcessSpec(
            "alertmanager",
            alertmanager_argv(files, ports.alertmanager),
            ready=http_ready(f"{alertmanager}/-/ready"),
            url=alertmanager,
        ),
        ProcessSpec(
            "prometheus",
            prometheus_argv(files, ports.prometheus),
            ready=http_ready(f"{prometheus}/-/ready"),
            url=prometheus,
        ),
    ]
