"""A frozen exporter or recorder pages as fast as a dead one, at the configured intervals.

Worst case from the moment a part stops: the process notices after its stall threshold, the
next scrape may be one scrape interval away, the next rule evaluation one evaluation interval
after that, and then the alert must stay pending for its `for`. Raising a `for` in
`[alerts.for]`, or a scrape or evaluation interval in `[alerts.prometheus]`, past the budget
fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.catalog import STALL_AFTER_SECONDS, AlertRule
from alerts.config import AlertsConfig, duration_seconds
from alerts.generate import enabled_alerts, load_inputs
from tests.alerts.conftest import BREAKING_POINTS, breaking_points_with

# About 2.5 minutes from the freeze to the page at the default 15 s intervals.
STALL_PAGE_BUDGET_SECONDS = 150
STALL_ALERTS = ("FleetopsExporterStalled", "FleetopsHistoryRecorderStalled")


def _rule(rules: list[AlertRule], name: str) -> AlertRule:
    return next(rule for rule in rules if rule.name == name)


def worst_case_seconds(rule: AlertRule, config: AlertsConfig, detection: float = 0) -> float:
    prometheus = config.prometheus
    return (
        detection
        + duration_seconds(prometheus.scrape_interval)
        + duration_seconds(prometheus.evaluation_interval)
        + duration_seconds(rule.hold)
    )


def _stalled_worst_cases(path: Path) -> dict[str, float]:
    points, config = load_inputs(path)
    rules = enabled_alerts(points, config)
    return {
        name: worst_case_seconds(_rule(rules, name), config, STALL_AFTER_SECONDS)
        for name in STALL_ALERTS
    }


def test_a_stalled_exporter_or_recorder_pages_within_two_and_a_half_minutes() -> None:
    # Today 45 s detection + 15 s scrape + 15 s evaluation + 1m `for` = 135 s.
    worst = _stalled_worst_cases(BREAKING_POINTS)
    for name, seconds in worst.items():
        assert seconds <= STALL_PAGE_BUDGET_SECONDS, (
            f"{name} pages {seconds:.0f} s after a freeze at worst, over the"
            f" {STALL_PAGE_BUDGET_SECONDS} s budget: lower its `for` in [alerts.for]"
        )


def test_a_stalled_exporter_pages_no_later_than_a_dead_one() -> None:
    points, config = load_inputs(BREAKING_POINTS)
    rules = enabled_alerts(points, config)
    stalled = worst_case_seconds(
        _rule(rules, "FleetopsExporterStalled"), config, STALL_AFTER_SECONDS
    )
    # A dead exporter fails its next scrape; `up == 0` then holds for FleetopsExporterDown's `for`.
    dead = worst_case_seconds(_rule(rules, "FleetopsExporterDown"), config)
    assert stalled <= dead
    for rule in (_rule(rules, name) for name in STALL_ALERTS):
        assert rule.severity == "critical", f"{rule.name} must page"


@pytest.mark.parametrize(
    "override",
    ['[alerts.for]\nFleetopsExporterStalled = "2m"', '[alerts.prometheus]\nscrape_interval = "1m"'],
)
def test_the_budget_fails_when_the_for_or_an_interval_grows(tmp_path: Path, override: str) -> None:
    slower = breaking_points_with(tmp_path / "breaking_points.toml", override)
    assert _stalled_worst_cases(slower)["FleetopsExporterStalled"] > STALL_PAGE_BUDGET_SECONDS


def test_the_stall_threshold_is_the_one_the_processes_use() -> None:
    from exporters.stream import health

    assert health.STALL_AFTER == STALL_AFTER_SECONDS, (
        "the exporter's stall threshold changed: update STALL_AFTER_SECONDS in alerts/catalog.py"
        " and check the `for` of the stalled alerts against the page budget"
    )
