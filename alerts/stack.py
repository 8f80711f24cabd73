"""Render a runnable Prometheus + Alertmanager + pager stack into a directory.

Used by the local fleet (alerts/fleet.py) and by the end-to-end test, so both run exactly the
configuration a deployment would, only with their own ports, intervals and runbook link base.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from alerts import alertmanager, prometheus
from alerts.config import AlertsConfig
from alerts.generate import ALERTS_FILE, RULES_FILE, generate
from alerts.yamlout import dump
from fleetops.breaking_points import BreakingPoints
from fleetops.ports import GRAFANA, LOOPBACK, is_loopback, target, url

PROMETHEUS_BINARY = "/usr/bin/prometheus"
ALERTMANAGER_BINARY = "/usr/bin/prometheus-alertmanager"
PAGERDUTY_KEY_FILE = "pagerduty-routing-key"


@dataclass(frozen=True)
class StackPorts:
    prometheus: int
    alertmanager: int
    pager: int


@dataclass(frozen=True)
class StackFiles:
    prometheus_config: Path
    prometheus_data: Path
    alertmanager_config: Path
    alertmanager_data: Path
    pages_log: Path


def binary(path: str, package: str) -> str:
    found = shutil.which(path) or shutil.which(Path(path).name)
    if found is None:
        raise FileNotFoundError(
            f"{path} is not installed: install the Debian package {package}"
            f" (apt-get install {package}); scripts/fleet does it on a fresh machine"
        )
    return found


def render_stack(
    directory: Path,
    *,
    points: BreakingPoints,
    config: AlertsConfig,
    ports: StackPorts,
    exporter_targets: list[str],
    flower_targets: list[str],
    recorder_targets: list[str] | None = None,
    exporter_replicas: Mapping[str, str] | None = None,
    scrape_interval: str | None = None,
    evaluation_interval: str | None = None,
    group_wait: str | None = None,
    group_interval: str | None = None,
    repeat_interval: str | None = None,
    pagerduty_routing_key: str | None = None,
    host: str = LOOPBACK,
) -> StackFiles:
    """The stack's files, with every address it writes (Prometheus' own target,
    Alertmanager's, the pager's URLs and runbook links) on ``host``, where the parts listen."""
    prom_dir = directory / "prometheus"
    am_dir = directory / "alertmanager"
    for path in (prom_dir / "data", am_dir / "data"):
        path.mkdir(parents=True, exist_ok=True)

    pager = url(host, ports.pager)
    # Links in local pages open the runbook served by the local pager, unless a base was set;
    # the default dashboard base (Grafana on loopback) moves to the stack's host with it.
    defaults = AlertsConfig()
    if config.runbook_url_base == defaults.runbook_url_base:
        config = config.with_overrides(runbook_url_base=f"{pager}/runbooks")
    if config.dashboard_url_base == defaults.dashboard_url_base:
        config = config.with_overrides(dashboard_url_base=url(host, GRAFANA))
    generated = generate(points, config)
    for name in (RULES_FILE, ALERTS_FILE):
        (prom_dir / name).write_text(generated.files[name])

    prometheus_config = prom_dir / "prometheus.yml"
    prometheus_config.write_text(
        dump(
            prometheus.render(
                exporter_targets=exporter_targets,
                exporter_replicas=exporter_replicas,
                flower_targets=flower_targets,
                recorder_targets=recorder_targets or [],
                prometheus_target=target(host, ports.prometheus),
                alertmanager_target=target(host, ports.alertmanager),
                scrape_interval=scrape_interval or config.prometheus.scrape_interval,
                evaluation_interval=evaluation_interval or config.prometheus.evaluation_interval,
                rule_files=[RULES_FILE, ALERTS_FILE],
                remote_write_url=config.prometheus.remote_write_url,
            )
        )
    )

    am = config.alertmanager
    key_file = _pagerduty_key_file(am_dir, am.pagerduty_routing_key_file, pagerduty_routing_key)
    alertmanager_config = am_dir / "alertmanager.yml"
    alertmanager_config.write_text(
        dump(
            alertmanager.render(
                pager_url=f"{pager}/page",
                ticket_url=f"{pager}/ticket",
                watchdog_url=f"{pager}/watchdog",
                pagerduty_routing_key_file=key_file,
                group_wait=group_wait or am.group_wait,
                group_interval=group_interval or am.group_interval,
                repeat_interval=repeat_interval or am.repeat_interval,
            )
        )
    )
    return StackFiles(
        prometheus_config=prometheus_config,
        prometheus_data=prom_dir / "data",
        alertmanager_config=alertmanager_config,
        alertmanager_data=am_dir / "data",
        pages_log=directory / "pages.jsonl",
    )


def _pagerduty_key_file(am_dir: Path, configured: str, key: str | None) -> str:
    """A key given in the environment goes to a private file; Alertmanager reads it there."""
    if key:
        path = am_dir / PAGERDUTY_KEY_FILE
        path.touch(mode=0o600, exist_ok=True)
        os.chmod(path, 0o600)
        path.write_text(key.strip())
        return str(path)
    if configured and Path(configured).is_file():
        return configured
    # No key here: page through the webhook only rather than fail every PagerDuty send.
    return ""


def prometheus_argv(
    files: StackFiles,
    port: int,
    retention: str = "2d",
    resend_delay: str = "1m",
    host: str = LOOPBACK,
) -> list[str]:
    # POST /-/reload and /-/quit have no authentication: only on loopback, where nobody else
    # reaches them. Elsewhere reload with SIGHUP (kill -HUP, systemctl reload).
    lifecycle = ["--web.enable-lifecycle"] if is_loopback(host) else []
    return [
        binary(PROMETHEUS_BINARY, "prometheus"),
        f"--config.file={files.prometheus_config}",
        f"--storage.tsdb.path={files.prometheus_data}",
        f"--storage.tsdb.retention.time={retention}",
        f"--web.listen-address={target(host, port)}",
        *lifecycle,
        # How often a still-firing alert is re-sent to Alertmanager (new alerts go at once).
        f"--rules.alert.resend-delay={resend_delay}",
    ]


def alertmanager_argv(files: StackFiles, port: int, host: str = LOOPBACK) -> list[str]:
    return [
        binary(ALERTMANAGER_BINARY, "prometheus-alertmanager"),
        f"--config.file={files.alertmanager_config}",
        f"--storage.path={files.alertmanager_data}",
        f"--web.listen-address={target(host, port)}",
        # A single local instance: no gossip port (it would otherwise bind 0.0.0.0:9094).
        "--cluster.listen-address=",
    ]


def pager_argv(port: int, pages_log: Path, host: str = LOOPBACK) -> list[str]:
    return [*fleetops_command(), "pager", "--host", host, "--port", str(port),
            "--log-file", str(pages_log)]  # fmt: skip


def fleetops_command() -> list[str]:
    """The ``fleetops`` entry point of this interpreter's environment."""
    beside = Path(sys.executable).parent / "fleetops"
    if beside.exists():
        return [str(beside)]
    return [sys.executable, "-c", "from fleetops.cli import main; main()"]
