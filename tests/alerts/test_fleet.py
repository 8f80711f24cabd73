"""The alerting part of `fleetops up`: what it renders and starts, checked by promtool and amtool.

The processes themselves run in the end-to-end test; here only their configuration, so every
environment override is covered without starting a fleet.
"""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import yaml

from alerts.fleet import processes
from fleetops.fleet.spec import FleetContext
from tests.alerts.conftest import tool

KEY = "pd-routing-key-0123"


def _fleet(tmp_path: Path) -> tuple[FleetContext, list]:
    ctx = FleetContext(
        run_dir=tmp_path,
        env={
            "FLEETOPS_PAGERDUTY_ROUTING_KEY": KEY,
            "FLEETOPS_PROMETHEUS_SCRAPE_INTERVAL": "5s",
            "FLEETOPS_ALERTMANAGER_GROUP_WAIT": "2s",
        },
        endpoints={
            "exporter": "127.0.0.1:19808",
            "flower": "http://127.0.0.1:15555",
            "history_metrics": "http://127.0.0.1:19818/metrics",
        },
    )
    return ctx, processes(ctx)


def test_starts_pager_then_alertmanager_then_prometheus(tmp_path: Path) -> None:
    ctx, specs = _fleet(tmp_path)
    assert [spec.name for spec in specs] == ["pager", "alertmanager", "prometheus"]
    assert {"pager", "alertmanager", "prometheus"} <= set(ctx.endpoints)
    assert all(spec.ready is not None for spec in specs)


def test_prometheus_scrapes_the_exporter_flower_and_recorder_and_promtool_accepts_it(
    tmp_path: Path,
) -> None:
    _fleet(tmp_path)
    config_file = tmp_path / "alerting" / "prometheus" / "prometheus.yml"
    config = yaml.safe_load(config_file.read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    assert targets["fleetops-exporter"] == ["127.0.0.1:19808"]
    assert targets["flower"] == ["127.0.0.1:15555"]
    assert targets["fleetops-recorder"] == ["127.0.0.1:19818"]
    assert config["global"]["scrape_interval"] == "5s"
    result = subprocess.run(
        [tool("promtool"), "check", "config", str(config_file)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_runbook_links_open_on_the_local_pager(tmp_path: Path) -> None:
    ctx, _ = _fleet(tmp_path)
    alerts = (tmp_path / "alerting" / "prometheus" / "prometheus_alerts.yaml").read_text()
    assert f"runbook_url: {ctx.endpoints['pager']}/runbooks/CeleryQueueDepthCritical.md" in alerts


def test_a_pagerduty_key_from_the_environment_goes_to_a_private_file(tmp_path: Path) -> None:
    _fleet(tmp_path)
    am_dir = tmp_path / "alerting" / "alertmanager"
    key_file = am_dir / "pagerduty-routing-key"
    assert key_file.read_text() == KEY
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    config = (am_dir / "alertmanager.yml").read_text()
    assert KEY not in config and f"routing_key_file: {key_file}" in config
    assert "group_wait: 2s" in config
    result = subprocess.run(
        [tool("amtool"), "check-config", str(am_dir / "alertmanager.yml")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_lifecycle_api_stays_on_loopback(tmp_path: Path) -> None:
    """POST /-/quit and /-/reload have no auth: a Prometheus reachable by other hosts (the fleet
    on a non-loopback address; TEST-NET-1 here, nothing is started) must not enable them."""
    near = {spec.name: spec for spec in _fleet(tmp_path / "near")[1]}
    assert "--web.enable-lifecycle" in near["prometheus"].argv
    ctx = FleetContext(run_dir=tmp_path / "far", env={}, endpoints={}, host="192.0.2.10")
    far = {spec.name: spec for spec in processes(ctx)}
    assert "--web.listen-address=192.0.2.10:9090" in far["prometheus"].argv
    assert "--web.enable-lifecycle" not in far["prometheus"].argv
