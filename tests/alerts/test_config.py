"""One validated loader for the whole breaking points file: a misspelt table or key fails with
its name, the shipped file sets only what differs from the defaults, and alerts, dashboards and
console read the same values."""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from alerts import prometheus
from alerts.cli import register
from alerts.config import AlertsConfig
from alerts.generate import enabled_alerts, load_inputs
from alerts.rules import ALERTS
from fleetops import breaking_points
from fleetops.errors import ConfigError
from tests.alerts.conftest import ALERTS_DIR, BREAKING_POINTS, breaking_points_with, tool
from tests.servers import REPO


@pytest.mark.parametrize(
    ("override", "error"),
    [
        # A misspelt table would otherwise be ignored, and its settings with it.
        ('[alert]\nrunbook_url_base = "https://runbooks.example"', r"\n  alert: Extra inputs"),
        ("[alerts.selector]\nexporter = 'job=\"x\"'", r"\n  alerts\.selector: Extra inputs"),
        # An alert that does not exist (CeleryQueueDepth... without its level).
        ('[alerts.for]\nCeleryQueueDepth = "5m"', r"\n  alerts\.for\.CeleryQueueDepth: Extra"),
        ("[alerts.selectors]\nexportr = 'job=\"x\"'", r"\n  alerts\.selectors\.exportr: Extra"),
        ('[alerts.prometheus]\nscrape_intervall = "5s"', r"alerts\.prometheus\.scrape_intervall"),
    ],
)
def test_a_misspelt_table_or_key_is_rejected_by_name(
    tmp_path: Path, override: str, error: str
) -> None:
    path = breaking_points_with(tmp_path / "bp.toml", override)
    with pytest.raises(ConfigError, match=error) as raised:
        breaking_points.load(path)
    assert str(path) in str(raised.value)


def _same_as_default(given: dict, defaults: dict, where: str) -> Iterator[str]:
    for key, value in given.items():
        if isinstance(value, dict):
            yield from _same_as_default(value, defaults[key], f"{where}.{key}")
        elif value == defaults[key]:
            yield f"{where}.{key}"


def test_the_shipped_file_sets_only_what_differs_from_the_defaults() -> None:
    shipped = tomllib.loads(BREAKING_POINTS.read_text()).get("alerts", {})
    defaults = AlertsConfig().model_dump(by_alias=True)
    repeated = sorted(_same_as_default(shipped, defaults, "alerts"))
    assert repeated == [], f"{BREAKING_POINTS} repeats defaults of alerts/: {repeated}"


@pytest.fixture
def custom_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = breaking_points_with(
        tmp_path / "bp.toml",
        '[alerts]\nrunbook_url_base = "https://runbooks.example/rb"\n'
        "[alerts.selectors]\nexporter = 'job=\"celery-exporter\"'",
    )
    monkeypatch.setenv(breaking_points.FILE_ENV, str(path))
    breaking_points.current.cache_clear()
    yield path
    breaking_points.current.cache_clear()


def test_alerts_dashboards_and_console_read_the_same_settings(custom_file: Path) -> None:
    from console.metrics import exporter_selector, work_queue_selector
    from dashboards.config import default_runbook_base_url

    points, config = load_inputs(custom_file)
    depth = next(a for a in enabled_alerts(points, config) if a.name == "CeleryQueueDepthWarning")
    assert depth.expr.startswith(
        'max without (instance, replica) (celery_queue_length{job="celery-exporter", '
    )
    assert depth.to_rule(config)["annotations"]["runbook_url"] == (
        "https://runbooks.example/rb/CeleryQueueDepthWarning.md"
    )
    current = breaking_points.current()
    assert exporter_selector(current) == 'job="celery-exporter"'
    assert work_queue_selector(current).startswith('job="celery-exporter", ')
    assert default_runbook_base_url() == "https://runbooks.example/rb"


def test_alerts_config_prints_every_setting_in_force(tmp_path: Path) -> None:
    path = breaking_points_with(tmp_path / "bp.toml", '[alerts.for]\nCeleryWorkerDown = "11m"')
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["alerts", "config", "--breaking-points", str(path)])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["for"]["CeleryWorkerDown"] == "11m"
    # Every rule's `for` is listed, the burn-rate pairs by name and long window.
    assert set(shown["for"]) == {spec.for_key for spec in ALERTS}
    assert "CeleryTaskErrorBudgetBurn:3d" in shown["for"]
    assert shown["selectors"]["exporter"] == 'job="fleetops-exporter"'


def test_remote_write_url_sends_every_sample_to_the_long_term_store(tmp_path: Path) -> None:
    """The shipped VictoriaMetrics example (docs/dashboards.md) is what the option generates;
    tests/dashboards/test_queries.py runs it against a real VictoriaMetrics."""
    url = "http://victoria-metrics:8428/api/v1/write"
    path = breaking_points_with(
        tmp_path / "bp.toml", f'[alerts.prometheus]\nremote_write_url = "{url}"'
    )
    _, config = load_inputs(path)
    block = {"remote_write": prometheus.reference_config(config)["remote_write"]}
    assert block == {"remote_write": [{"url": url}]}
    assert "remote_write" not in prometheus.reference_config(AlertsConfig())
    documented = (REPO / "docs" / "dashboards.md").read_text()
    assert f'remote_write_url = "{url}"' in documented
    assert f"```yaml\n{yaml.safe_dump(block)}```" in documented
    # Prometheus's own checker accepts the whole configuration with it.
    for name in ("prometheus_rules.yaml", "prometheus_alerts.yaml"):
        shutil.copy(ALERTS_DIR / name, tmp_path / name)
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(prometheus.reference_config(config)))
    check = subprocess.run(
        [tool("promtool"), "check", "config", str(config_file)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr

    broken = breaking_points_with(
        tmp_path / "broken.toml", '[alerts.prometheus]\nremote_write_url = "victoria:8428"'
    )
    with pytest.raises(ConfigError, match="remote_write_url"):
        load_inputs(broken)
