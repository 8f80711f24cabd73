"""Every dashboard built through grafana-foundation-sdk models, rendered, loaded back and held to
the conventions: stable uids, unique panel ids, a data source, unit, description and query on
every panel, $__rate_interval in every range, thresholds from the breaking points."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from grafana_foundation_sdk.models.dashboard import Dashboard

from dashboards.base import BuildOptions
from dashboards.build import BUILDERS, render
from dashboards.config import LINK_TAG, TITLE_PREFIX, Uid, default_runbook_base_url
from dashboards.runbooks import ALERTS_BY_TOPIC
from fleetops import breaking_points
from tests.dashboards.walk import (
    RANGE_SELECTOR,
    all_ids,
    built_json,
    histogram_base,
    metric_names,
    panels,
    query_variables,
)

REPO = Path(__file__).resolve().parents[2]
BUILT = built_json()
EXPECTED_UIDS = {uid.value for uid in Uid}
KEPT_IN_LINKS = (
    "${datasource:queryparam}",
    "${app:queryparam}",
    "${job:queryparam}",
    "${__url_time_range}",
)


def test_uids_are_the_stable_ones_and_unique() -> None:
    uids = [dashboard["uid"] for dashboard in BUILT.values()]
    assert sorted(uids) == sorted(EXPECTED_UIDS)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_json_loads_back_into_the_sdk_model_unchanged(name: str) -> None:
    text = render(BUILDERS[name](BuildOptions()))
    assert render(Dashboard.from_json(json.loads(text))) == text


@pytest.mark.parametrize("name", list(BUILDERS))
def test_dashboard_frame(name: str) -> None:
    dashboard = BUILT[name]
    assert dashboard["title"].startswith(TITLE_PREFIX)
    assert LINK_TAG in dashboard["tags"]
    assert dashboard["description"]
    ids = all_ids(dashboard)
    assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids {ids}"
    header = dashboard["links"][0]
    assert header["type"] == "dashboards" and header["tags"] == [LINK_TAG]
    assert header["includeVars"] and header["keepTime"]


@pytest.mark.parametrize("name", list(BUILDERS))
def test_variables_datasource_first_then_cascading_label_values(name: str) -> None:
    variables = BUILT[name]["templating"]["list"]
    assert variables[0]["type"] == "datasource" and variables[0]["query"] == "prometheus"
    assert [variables[1]["name"], variables[2]["name"]] == ["app", "job"]
    app = variables[1]
    assert app["query"] == "label_values(fleetops_breaking_point, app)"
    assert app["multi"] and app["includeAll"] and app["allValue"] == ".*"
    for variable in query_variables(BUILT[name]):
        assert variable["query"].startswith("label_values("), variable
        assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert variable["refresh"] == 2, f"{variable['name']} must refresh on time range change"
        if variable["name"] != "app":  # every other variable lists the selected apps' values
            assert re.search(r'app=~"\$app\|?"', variable["query"]), (
                f"{variable['name']} must follow $app"
            )
        if not variable["name"].endswith("job") and variable["name"] != "app":
            # a job variable picks a scrape job itself
            assert 'job=~"$job"' in variable["query"], f"{variable['name']} must follow $job"


# Series Prometheus writes per scrape target: one exporter serves every app in one target.
PER_TARGET = re.compile(r"\b(up|scrape_duration_seconds|scrape_samples_scraped)\{")


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_panel_query_filters_by_the_app_variable(name: str) -> None:
    """Every selector of every panel query keeps only the selected apps' series."""
    for panel in panels(BUILT[name]):
        for target in panel["targets"]:
            expr = target["expr"]
            selectors = re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*\{[^}]*\}", expr)
            assert selectors, f"{panel['title']}: {expr}"
            for selector in selectors:
                if not PER_TARGET.match(selector):
                    assert re.search(r'app=~"\$app\|?"', selector), f"{panel['title']}: {selector}"


# Series that carry no app, or carry it only on some of them: the recorder's (its writer serves
# every app) and Flower's (it knows nothing of apps).
APP_OR_NONE_SERIES = re.compile(r"\b(fleetops_history_\w+|flower_\w+)\{")


@pytest.mark.parametrize("name", list(BUILDERS))
def test_series_without_an_app_are_not_filtered_to_one(name: str) -> None:
    """A selected app (a one-app fleet selects "default") must not blank the panels and
    variables of series that carry no app label: `up`, scrape_*, the recorder's, Flower's."""
    exprs = [target["expr"] for panel in panels(BUILT[name]) for target in panel["targets"]]
    exprs += [variable["query"] for variable in query_variables(BUILT[name])]
    for expr in exprs:
        for selector in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*\{[^}]*\}", expr):
            if PER_TARGET.match(selector):
                assert "app=" not in selector, selector
            elif APP_OR_NONE_SERIES.match(selector):
                assert 'app=~"$app|"' in selector, selector


@pytest.mark.parametrize("name", list(BUILDERS))
def test_queues_and_workers_stay_apart_per_app(name: str) -> None:
    """Two apps may both have a queue "celery" or a worker "celery@web": with All apps selected
    a panel keeps them apart (grouped and labelled by app), never adds them up."""
    for panel in panels(BUILT[name]):
        for target in panel["targets"]:
            for grouping in re.findall(r"\bby \(([^)]*)\)", target["expr"]):
                labels = {label.strip() for label in grouping.split(",")}
                if labels & {"queue_name", "hostname"}:
                    assert "app" in labels, f"{panel['title']}: by ({grouping})"
            legend = target.get("legendFormat", "")
            if "{{queue_name}}" in legend or "{{hostname}}" in legend:
                assert "{{app}}" in legend, f"{panel['title']}: {legend}"


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_panel_has_datasource_unit_description_and_query(name: str) -> None:
    for panel in panels(BUILT[name]):
        where = f"{name}: panel {panel['title']!r}"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{where} has no unit"
        assert panel.get("description"), f"{where} has no description"
        assert panel.get("targets"), f"{where} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), where
            assert target["datasource"] == panel["datasource"], where
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), where


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_range_uses_rate_interval(name: str) -> None:
    for panel in panels(BUILT[name]):
        for target in panel["targets"]:
            expr = target["expr"]
            ranges = RANGE_SELECTOR.findall(expr)
            assert all(r == "$__rate_interval" for r in ranges), f"{panel['title']}: {expr}"
            if re.search(r"\b(rate|increase|irate)\(", expr):
                assert ranges, f"{panel['title']}: {expr}"


def _known_metrics() -> set[str]:
    contract = (REPO / "docs" / "metrics.md").read_text()
    ours = set(re.findall(r"`((?:celery|fleetops)_[a-z_]+)`", contract))
    import flower.events

    flower_source = Path(flower.events.__file__).read_text()
    theirs = set(re.findall(r"'(flower_[a-z_]+)'", flower_source))
    prometheus_own = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS"}
    return ours | theirs | prometheus_own


def test_every_metric_is_in_the_contract_or_flower() -> None:
    known = _known_metrics()
    assert "flower_task_prefetch_time_seconds" in known
    for name, dashboard in BUILT.items():
        for panel in panels(dashboard):
            for target in panel["targets"]:
                unknown = {
                    metric
                    for metric in metric_names(target["expr"])
                    if metric not in known and histogram_base(metric) not in known
                }
                assert not unknown, f"{name}/{panel['title']}: {unknown} not in docs/metrics.md"


def test_breaking_point_panels_draw_the_configured_levels() -> None:
    points = breaking_points.current()
    checked = 0
    for dashboard in BUILT.values():
        for panel in panels(dashboard):
            for target in panel["targets"]:
                match = re.search(r'fleetops_breaking_point\{.*signal="(\w+)"', target["expr"])
                if not match:
                    continue
                signal = points.signals[match.group(1)]
                steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
                assert [s["value"] for s in steps] == [
                    None,
                    signal.warning,
                    signal.critical,
                    signal.breaking,
                ], panel["title"]
                checked += 1
    assert checked >= 6


def _overview_with_points_file(path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The overview dashboard built while ``path`` is the breaking points file."""
    monkeypatch.setenv(breaking_points.FILE_ENV, str(path))
    breaking_points.current.cache_clear()
    try:
        return json.loads(render(BUILDERS["overview"](BuildOptions())))
    finally:
        monkeypatch.delenv(breaking_points.FILE_ENV)
        breaking_points.current.cache_clear()


def test_thresholds_follow_the_breaking_points_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = breaking_points.DEFAULT_FILE.read_text()
    changed = tmp_path / "breaking_points.toml"
    changed.write_text(original.replace("warning = 1000", "warning = 1234", 1))
    overview = _overview_with_points_file(changed, monkeypatch)
    depth = next(p for p in panels(overview) if p["title"] == "Queue depth")
    values = [s["value"] for s in depth["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert values[1] == 1234
    assert "warning at 1234" in depth["description"]


def test_drill_down_links_target_existing_dashboards_and_keep_variables() -> None:
    found = 0
    for dashboard in BUILT.values():
        for panel in panels(dashboard):
            for link in panel["fieldConfig"]["defaults"].get("links", []):
                target = re.match(r"/d/([\w-]+)/", link["url"])
                assert target and target.group(1) in EXPECTED_UIDS, link["url"]
                for kept in KEPT_IN_LINKS:
                    assert kept in link["url"], link["url"]
                found += 1
    assert found >= 4


def test_runbook_links_name_alerts_that_exist() -> None:
    alerts_file = REPO / "alerts" / "prometheus_alerts.yaml"
    if not alerts_file.exists():
        pytest.skip("alerts/prometheus_alerts.yaml is not generated yet")
    defined = set(re.findall(r"^\s*- alert: (\w+)", alerts_file.read_text(), re.MULTILINE))
    linked = {alert for alerts in ALERTS_BY_TOPIC.values() for alert in alerts}
    assert linked <= defined, f"panels link runbooks of unknown alerts: {linked - defined}"
    base = default_runbook_base_url()
    for dashboard in BUILT.values():
        for panel in panels(dashboard):
            for link in panel.get("links", []):
                assert link["url"].startswith(base), link["url"]
                assert link["url"].removeprefix(base).strip("/").removesuffix(".md") in defined


def test_runbook_links_follow_the_runbook_base_of_the_breaking_points_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The value written in the file, not the default both packages share: a dashboard that kept
    # its own copy of the base would still pass a comparison of defaults.
    base = "https://runbooks.example/fleetops"
    changed = tmp_path / "breaking_points.toml"
    changed.write_text(
        f'{breaking_points.DEFAULT_FILE.read_text()}\n[alerts]\nrunbook_url_base = "{base}"\n'
    )
    overview = _overview_with_points_file(changed, monkeypatch)
    links = [link["url"] for panel in panels(overview) for link in panel.get("links", [])]
    assert f"{base}/CeleryQueueDepthCritical.md" in links
    assert all(url.startswith(f"{base}/") for url in links), links
