"""Panel builders with the house defaults: Prometheus through the `datasource` variable, a unit
and a description on every panel, thresholds from the breaking points."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders.dashboard import DashboardLink, ThresholdsConfig
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    DataTransformerConfig,
    DynamicConfigValue,
    Threshold,
    ThresholdsMode,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from dashboards import promql
from fleetops.breaking_points import Level, Signal, current

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")

LEVEL_COLORS: dict[Level, str] = {
    Level.SAFE: "green",
    Level.WARNING: "yellow",
    Level.CRITICAL: "orange",
    Level.BREAKING: "red",
}
# The levels above safe: each has its alert and its line on the graphs.
LEVELS = (Level.WARNING, Level.CRITICAL, Level.BREAKING)
BREAKING_POINT_LEGEND = "breaking point: {{level}}"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = "__auto"
    instant: bool = False


def _targets(queries: Sequence[Query]) -> list[prometheus.Dataquery]:
    targets = []
    for index, query in enumerate(queries):
        target = (
            prometheus.Dataquery()
            .expr(query.expr)
            .legend_format(query.legend)
            .ref_id(chr(ord("A") + index))
            .datasource(DATASOURCE)
        )
        targets.append(target.instant() if query.instant else target.range())
    return targets


AnyPanel = TypeVar("AnyPanel", timeseries.Panel, stat.Panel, table.Panel)


def _framed(
    panel: AnyPanel,
    title: str,
    description: str,
    unit: str,
    targets: list[prometheus.Dataquery],
    width: int,
    height: int,
) -> AnyPanel:
    """What every panel carries, whatever its type: the house rules of the module docstring."""
    return (
        panel.title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .targets(targets)
        .span(width)
        .height(height)
    )


def _linked(panel: AnyPanel, links: Sequence[DashboardLink]) -> AnyPanel:
    return panel.links(list(links)) if links else panel


def signal_thresholds(signal: Signal) -> ThresholdsConfig:
    """Colour steps at the signal's levels: the same numbers the alert rules fire at."""
    steps = [Threshold(value=None, color=LEVEL_COLORS[Level.SAFE])]
    steps += [
        Threshold(value=value, color=LEVEL_COLORS[level])
        for level, value in signal.thresholds().items()
    ]
    return ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(steps)


def describe_levels(signal: Signal) -> str:
    return (
        f"Bands from fleetops/breaking_points.toml, the numbers the alerts fire at: warning at"
        f" {signal.warning:g}, critical at {signal.critical:g}, breaking at {signal.breaking:g}"
        f" ({signal.unit})."
    )


def value_thresholds(*steps: tuple[float, str], base_color: str = "green") -> ThresholdsConfig:
    base = [Threshold(value=None, color=base_color)]
    return (
        ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps(base + [Threshold(value=value, color=color) for value, color in steps])
    )


def up_thresholds() -> ThresholdsConfig:
    """Red at 0, green from 1: for counts of things that must be running."""
    return value_thresholds((1, "green"), base_color="red")


def breaking_point_query(signal_name: str) -> Query:
    return Query(promql.breaking_point(signal_name), BREAKING_POINT_LEGEND)


def _breaking_point_overrides(panel: timeseries.Panel) -> timeseries.Panel:
    """Draw the breaking-point series as dashed lines in their level's colour, unfilled."""
    for level in LEVELS:
        panel = panel.override_by_name(
            BREAKING_POINT_LEGEND.replace("{{level}}", level.value),
            [
                DynamicConfigValue("color", {"mode": "fixed", "fixedColor": LEVEL_COLORS[level]}),
                DynamicConfigValue("custom.lineStyle", {"fill": "dash", "dash": [10, 10]}),
                DynamicConfigValue("custom.fillOpacity", 0),
            ],
        )
    return panel


def timeseries_panel(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    *,
    width: int = 12,
    height: int = 8,
    thresholds: ThresholdsConfig | None = None,
    with_breaking_points: str | None = None,
    links: Sequence[DashboardLink] = (),
    data_links: Sequence[DashboardLink] = (),
    min_value: float | None = 0,
    max_value: float | None = None,
    stacked: bool = False,
) -> timeseries.Panel:
    """A time series; ``with_breaking_points`` names a signal whose configured levels are drawn
    both as threshold bands (from the file, in place of ``thresholds``) and as series (from the
    exporter's metric)."""
    all_queries = list(queries)
    if with_breaking_points:
        all_queries.append(breaking_point_query(with_breaking_points))
        thresholds = signal_thresholds(current().signals[with_breaking_points])
    panel = (
        _framed(timeseries.Panel(), title, description, unit, _targets(all_queries), width, height)
        .fill_opacity(10)
        .line_width(1)
        .show_points(common.VisibilityMode.NEVER)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )
    if min_value is not None:
        panel = panel.min(min_value)
    if max_value is not None:
        panel = panel.max(max_value)
    if thresholds is not None:
        panel = panel.thresholds(thresholds).thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(
                common.GraphThresholdsStyleMode.DASHED_AND_AREA
            )
        )
    if with_breaking_points:
        panel = _breaking_point_overrides(panel)
    if stacked:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    panel = _linked(panel, links)
    if data_links:
        panel = panel.data_links(list(data_links))
    return panel


def stat_panel(
    title: str,
    description: str,
    query: Query,
    *,
    width: int,
    height: int = 8,
    thresholds: ThresholdsConfig | None = None,
    links: Sequence[DashboardLink] = (),
) -> stat.Panel:
    """One number, as tall as the graphs beside it unless told. Every stat of the fleet counts
    things, mostly things that must be running: red at 0 unless ``thresholds`` say otherwise."""
    return _linked(
        _framed(stat.Panel(), title, description, "short", _targets([query]), width, height)
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.VALUE)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(thresholds or up_thresholds()),
        links,
    )


def table_panel(
    title: str,
    description: str,
    unit: str,
    query: Query,
    *,
    width: int = 24,
    height: int = 8,
    links: Sequence[DashboardLink] = (),
) -> table.Panel:
    """An instant table across the dashboard, one row per series, its labels as columns."""
    targets = [
        target.format(PromQueryFormat.TABLE)
        for target in _targets([Query(query.expr, query.legend, True)])
    ]
    panel = _framed(
        table.Panel(), title, description, unit, targets, width, height
    ).with_transformation(
        DataTransformerConfig(id_val="organize", options={"excludeByName": {"Time": True}})
    )
    return _linked(panel, links)
