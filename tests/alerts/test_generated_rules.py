"""The committed rule files are exactly what the generator writes, valid, and conventional."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from alerts import catalog, docs
from alerts.catalog import AlertRule
from alerts.cli import register
from alerts.config import AlertsConfig
from alerts.generate import differences, enabled_alerts, generate, load_inputs
from alerts.stack import fleetops_command
from fleetops.errors import ConfigError
from tests.alerts.conftest import ALERTS_DIR, BREAKING_POINTS, REPO, breaking_points_with, tool


def _env_without_overrides() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "FLEETOPS_BREAKING_POINTS_FILE"}


def test_committed_files_match_the_generator() -> None:
    result = subprocess.run(
        [*fleetops_command(), "alerts", "generate", "--check"],
        capture_output=True, text=True, env=_env_without_overrides(), cwd=REPO, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_check_fails_and_shows_the_difference(tmp_path: Path) -> None:
    points, config = load_inputs(BREAKING_POINTS)
    generated = generate(points, config)
    for name, text in generated.files.items():
        (tmp_path / name).write_text(text.replace(">= 5000", ">= 4999"))
    diffs = differences(generated, tmp_path)
    assert len(diffs) == 1
    assert "-        expr: max without (instance, replica) (celery_queue_length" in diffs[0]
    assert ">= 5000" in diffs[0]

    result = subprocess.run(
        [*fleetops_command(), "alerts", "generate", "--check", "--out-dir", str(tmp_path)],
        capture_output=True, text=True, env=_env_without_overrides(), cwd=REPO, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert "out of date" in result.stderr and "prometheus_alerts.yaml" in result.stderr


def test_promtool_accepts_the_rules_and_the_prometheus_config() -> None:
    promtool = tool("promtool")
    rules = [str(ALERTS_DIR / "prometheus_rules.yaml"), str(ALERTS_DIR / "prometheus_alerts.yaml")]
    result = subprocess.run([promtool, "check", "rules", *rules], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    result = subprocess.run(
        [promtool, "check", "config", str(ALERTS_DIR / "prometheus.yml")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_threshold_changed_in_the_breaking_points_changes_the_rules(tmp_path: Path) -> None:
    lowered = BREAKING_POINTS.read_text().replace("critical = 5000", "critical = 4200")
    path = tmp_path / "breaking_points.toml"
    path.write_text(lowered)
    generated = generate(*load_inputs(path))
    alerts = generated.files["prometheus_alerts.yaml"]
    assert "celery_queue_length{" in alerts
    assert ">= 4200" in alerts and ">= 5000" not in alerts
    assert "critical level of 4,200." in alerts


ISSUE_ALERTS = {
    "CeleryQueueDepthWarning", "CeleryQueueDepthCritical", "CeleryQueueDepthBreaking",
    "CeleryQueueBacklogGrowing", "CeleryQueueDrainTooSlow", "CeleryWorkerMemoryWarning",
    "CeleryWorkerMemoryCritical", "CeleryWorkerMemoryBreaking", "CeleryTaskLatencyWarning",
    "CeleryTaskLatencyCritical", "CeleryTaskLatencyBreaking", "CeleryTaskErrorBudgetBurn",
    "CeleryWorkerDown", "CeleryQueueNoConsumer", "CeleryBeatMissedRun",
    "CeleryDeadLetterQueueGrowing", "FleetopsEventsStopped", "FleetopsTaskEventsMissing",
    "FleetopsExporterDown", "FleetopsFlowerDown", "FleetopsWatchdog",
}  # fmt: skip


def test_every_alert_of_the_specification_exists(alert_names: list[str]) -> None:
    assert set(alert_names) >= ISSUE_ALERTS


def test_alerts_follow_the_conventions(committed_alerts: list[AlertRule]) -> None:
    config = AlertsConfig()
    for alert in committed_alerts:
        rule = alert.to_rule(config)
        assert re.fullmatch(r"(Celery|Fleetops)[A-Z][A-Za-z]+", alert.name), alert.name
        assert rule["labels"]["severity"] in {"critical", "warning", "info", "none"}
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url", "dashboard_url"}
        assert annotations["summary"].endswith("."), alert.name
        assert "{{" not in annotations["summary"], f"{alert.name}: summary must be static"
        assert "{{ $value | humanize" in annotations["description"], alert.name
        assert annotations["runbook_url"].endswith(f"/{alert.name}.md")
        assert re.search(r"/d/fleetops-(overview|queue|worker|task|flower|exporter)\b",
                         annotations["dashboard_url"]), alert.name  # fmt: skip
        if "queue_name" in annotations["description"] and alert.dashboard.variables:
            assert "var-queue={{ $labels.queue_name" in annotations["dashboard_url"]


def test_error_budget_alerts_are_multi_window_multi_burn_rate(
    committed_alerts: list[AlertRule],
) -> None:
    burn = [a for a in committed_alerts if a.name == "CeleryTaskErrorBudgetBurn"]
    pairs = {(a.labels["long_window"], a.labels["short_window"], a.severity) for a in burn}
    assert pairs == {
        ("1h", "5m", "critical"), ("6h", "30m", "critical"),
        ("1d", "2h", "warning"), ("3d", "6h", "warning"),
    }  # fmt: skip
    fast = next(a for a in burn if a.labels["long_window"] == "1h")
    assert "> 0.0144" in fast.expr  # 14.4 x (1 - 0.999)


def test_recording_rules_are_named_level_metric_operations() -> None:
    groups = yaml.safe_load((ALERTS_DIR / "prometheus_rules.yaml").read_text())["groups"]
    for group in groups:
        for rule in group["rules"]:
            assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", rule["record"]), rule["record"]


def test_disabled_alerts_are_left_out_and_unknown_names_refused(tmp_path: Path) -> None:
    path = breaking_points_with(tmp_path / "bp.toml", '[alerts]\ndisabled = ["FleetopsFlowerDown"]')
    names = {a.name for a in enabled_alerts(*load_inputs(path))}
    assert "FleetopsFlowerDown" not in names and "FleetopsExporterDown" in names

    path = breaking_points_with(tmp_path / "bp.toml", '[alerts]\ndisabled = ["CeleryQueueDeep"]')
    with pytest.raises(
        ConfigError, match=r"alerts\.disabled: .*unknown alert name.*CeleryQueueDeep"
    ):
        load_inputs(path)


def test_a_bad_duration_names_the_key(tmp_path: Path) -> None:
    path = breaking_points_with(
        tmp_path / "bp.toml", '[alerts.for]\nCeleryQueueDepthWarning = "15 minutes"'
    )
    with pytest.raises(ConfigError, match=r"for\.CeleryQueueDepthWarning.*Prometheus duration"):
        load_inputs(path)


def test_a_for_set_in_the_file_overrides_the_default_of_its_alert_only(tmp_path: Path) -> None:
    default = {a.name: a.hold for a in enabled_alerts(*load_inputs(BREAKING_POINTS))}
    path = breaking_points_with(
        tmp_path / "bp.toml",
        '[alerts.for]\nCeleryQueueDepthWarning = "42m"\n"CeleryTaskErrorBudgetBurn:1h" = "7m"',
    )
    rules = enabled_alerts(*load_inputs(path))
    changed = {a.name: a.hold for a in rules}
    assert changed.pop("CeleryQueueDepthWarning") == "42m" != default.pop("CeleryQueueDepthWarning")
    burn = {a.labels["long_window"]: a.hold for a in rules if a.name == "CeleryTaskErrorBudgetBurn"}
    assert burn == {"1h": "7m", "6h": "15m", "1d": "1h", "3d": "3h"}
    assert changed == default


def test_check_fails_when_the_alert_tables_of_the_docs_are_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = tmp_path / "alerts.md"
    stale.write_text(docs.DOCS_FILE.read_text().replace("| 5,000 |", "| 4,999 |"))
    monkeypatch.setattr(docs, "DOCS_FILE", stale)
    monkeypatch.delenv("FLEETOPS_BREAKING_POINTS_FILE", raising=False)
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["alerts", "generate", "--check"])
    assert result.exit_code == 1
    assert f"{stale}: the generated alert tables differ" in result.output


def test_docs_tables_come_from_the_breaking_points(tmp_path: Path) -> None:
    path = tmp_path / "bp.toml"
    path.write_text(BREAKING_POINTS.read_text().replace("critical = 5000", "critical = 4200"))
    points, config = load_inputs(path)
    block = docs.block(points, config, enabled_alerts(points, config))
    assert "| Queue depth (`queue_depth`) | messages | 1,000 | 4,200 | 10,000 |" in block
    assert ">= 4200` |" in block
    with pytest.raises(ConfigError, match="no generated block"):
        docs.splice("# Alerts\n", block)


def test_runbook_url_base_is_a_directory_or_a_page_taking_the_alert_name(
    committed_alerts: list[AlertRule],
) -> None:
    rule = next(a for a in committed_alerts if a.name == "CeleryQueueDepthCritical")
    repo = AlertsConfig(runbook_url_base="https://git.example/fleetops/blob/main/runbooks/")
    assert rule.to_rule(repo)["annotations"]["runbook_url"] == (
        "https://git.example/fleetops/blob/main/runbooks/CeleryQueueDepthCritical.md"
    )
    console = AlertsConfig(runbook_url_base="http://console:8501/runbooks?runbook={alert}")
    # The console's page also keeps the alert's app selected (rendered by promtool in
    # tests/alerts/promtool/two_apps.yaml for the dashboard link, built the same way).
    assert rule.to_rule(console)["annotations"]["runbook_url"] == (
        "http://console:8501/runbooks?runbook=CeleryQueueDepthCritical"
        "{{ with $labels.app }}&app={{ . | urlquery }}{{ end }}"
    )


def test_task_fault_alerts_take_the_ratio_and_window_from_one_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The ratio is fleetops/task_faults.py's, reached through the catalog's placeholders: a
    # ratio typed into a rule would not follow.
    monkeypatch.setattr(catalog, "NEAR_VISIBILITY_TIMEOUT_RATIO", 0.5)
    path = breaking_points_with(tmp_path / "bp.toml", '[alerts.task_faults]\nwindow = "3h"')
    rules = enabled_alerts(*load_inputs(path))
    near = [a for a in rules if a.name == "CeleryTaskRuntimeNearVisibilityTimeout"]
    assert {a.labels["kind"] for a in near} == {"time_limit", "runtime"}
    for alert in near:
        assert "0.5 * min without (instance, replica) (fleetops_broker_visibility" in alert.expr
        assert "at least 50% of the visibility timeout" in alert.description
    facts = {"CeleryTaskLost", "CeleryTaskRanTwice", "CeleryTaskEtaBeyondVisibilityTimeout"}
    windowed = [a for a in rules if a.name in facts]
    assert len(windowed) == 3
    for alert in windowed:
        assert "[3h]" in alert.expr and "in the last 3h" in alert.description, alert.name
        assert alert.hold == "0s", f"{alert.name}: a fact fires at the first evaluation"
