"""promtool unit tests: every alert fires at its `for` boundary and not one evaluation before."""

from __future__ import annotations

import subprocess

import yaml

from tests.alerts.conftest import PROMTOOL_DIR, tool


def test_every_alert_has_a_promtool_unit_test_around_its_for_boundary(
    alert_names: list[str],
) -> None:
    for name in alert_names:
        path = PROMTOOL_DIR / f"{name}.yaml"
        assert path.is_file(), f"{name} has no promtool unit test {path}"
        cases = [
            case
            for test in yaml.safe_load(path.read_text())["tests"]
            for case in test.get("alert_rule_test", [])
            if case["alertname"] == name
        ]
        assert any(case["exp_alerts"] for case in cases), f"{path}: never expects it to fire"
        if name != "FleetopsWatchdog":
            assert any(not case["exp_alerts"] for case in cases), (
                f"{path}: never checks that it is silent just before the boundary"
            )
        for case in cases:
            for alert in case["exp_alerts"]:
                assert {"summary", "description", "runbook_url", "dashboard_url"} <= set(
                    alert["exp_annotations"]
                ), f"{path}: assert every annotation"
                assert "severity" in alert["exp_labels"]


def test_promtool_unit_tests_pass() -> None:
    files = sorted(str(p) for p in PROMTOOL_DIR.glob("*.yaml"))
    result = subprocess.run(
        [tool("promtool"), "test", "rules", *files], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
