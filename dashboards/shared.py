"""Panels that stand on more than one dashboard, built once so the copies cannot drift apart:
the overview shows them over every queue and links down, a drill-down shows them over its
selection."""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.builders.dashboard import DashboardLink

from dashboards.base import BuildOptions
from dashboards.panels import (
    Query,
    describe_levels,
    signal_thresholds,
    timeseries_panel,
    value_thresholds,
)
from dashboards.promql import BY_WORKER, QUEUE_LEGEND, WORKER_LEGEND, max_by, sel
from dashboards.queries import error_budget, failure_ratio, per_queue
from dashboards.runbooks import Topic
from fleetops.breaking_points import current


def queue_depth(
    options: BuildOptions,
    title: str,
    description: str,
    *,
    after_levels: str = "",
    data_links: Sequence[DashboardLink] = (),
) -> timeseries.Panel:
    return timeseries_panel(
        title,
        description + describe_levels(current().queue_depth) + after_levels,
        "short",
        [Query(per_queue("celery_queue_length"), QUEUE_LEGEND)],
        with_breaking_points="queue_depth",
        links=options.runbooks(Topic.QUEUE_DEPTH),
        data_links=data_links,
    )


def time_to_drain(
    options: BuildOptions,
    description: str,
    *,
    width: int = 12,
    data_links: Sequence[DashboardLink] = (),
) -> timeseries.Panel:
    """Judged against the task latency levels: the last waiting task runs once the queue has
    drained."""
    latency = current().task_latency
    return timeseries_panel(
        "Time to drain",
        description + describe_levels(latency),
        "s",
        [Query(per_queue("fleetops_queue_drain_seconds", "max", least=True), QUEUE_LEGEND)],
        width=width,
        thresholds=signal_thresholds(latency),
        links=options.runbooks(Topic.QUEUE_DRAIN),
        data_links=data_links,
    )


def arrival_vs_completion(
    description: str, *, width: int = 12, data_links: Sequence[DashboardLink] = ()
) -> timeseries.Panel:
    return timeseries_panel(
        "Arrival vs completion",
        description,
        "ops",
        [
            Query(per_queue("fleetops_queue_arrival_rate"), f"{QUEUE_LEGEND} arrivals"),
            Query(per_queue("fleetops_queue_completion_rate"), f"{QUEUE_LEGEND} completions"),
        ],
        width=width,
        data_links=data_links,
    )


def worker_memory(
    options: BuildOptions,
    title: str,
    description: str,
    *matchers: str,
    data_links: Sequence[DashboardLink] = (),
) -> timeseries.Panel:
    return timeseries_panel(
        title,
        description + describe_levels(current().worker_memory),
        "percent",
        [
            Query(
                max_by(list(BY_WORKER), sel("fleetops_worker_memory_percent", *matchers)),
                WORKER_LEGEND,
            )
        ],
        width=8,
        with_breaking_points="worker_memory",
        links=options.runbooks(Topic.WORKER_MEMORY),
        data_links=data_links,
    )


def failure_ratio_against_budget(
    options: BuildOptions, what: str, *matchers: str, width: int = 12
) -> timeseries.Panel:
    """``what`` says which tasks the ratio is over; the budget follows from the objective."""
    objectives = current().objectives
    return timeseries_panel(
        "Failure ratio",
        f"{what}, against the error budget of the {objectives.task_success_ratio:.3%} success"
        f" objective ({objectives.error_budget:.3%}).",
        "percentunit",
        [Query(failure_ratio(*matchers), "failure ratio"), error_budget()],
        width=width,
        thresholds=value_thresholds((objectives.error_budget, "red")),
        links=options.runbooks(Topic.TASK_FAILURES),
    )
