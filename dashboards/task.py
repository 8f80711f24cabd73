"""Task drill-down (RED): rate by outcome, errors by exception, runtime, wait and latency."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as models

from dashboards import shared, task_faults, variables
from dashboards.base import BuildOptions, assemble
from dashboards.config import Uid
from dashboards.links import drill_down
from dashboards.panels import Query, describe_levels, timeseries_panel
from dashboards.promql import (
    BY_WORKER,
    JOB,
    QUEUE,
    TASK,
    WORKER_LEGEND,
    fleet_quantile,
    fleet_rate,
    or_zero,
    sel,
    sum_by,
)
from dashboards.queries import percentiles
from dashboards.runbooks import Topic
from fleetops.breaking_points import current

SELECTED = (JOB, QUEUE, TASK)


def _outcome_rate(metric: str) -> str:
    return f"sum({fleet_rate(sel(metric, *SELECTED))})"


def _p95_by_task(bucket_metric: str) -> Query:
    return Query(fleet_quantile(0.95, sel(bucket_metric, *SELECTED), ("name",)), "{{name}}")


def build(options: BuildOptions) -> models.Dashboard:
    to_worker = drill_down(Uid.WORKER, "Worker ${__field.labels.hostname}", worker="hostname")

    rates = [
        timeseries_panel(
            "Rate by stage",
            "Tasks per second as they pass each stage: sent, started, succeeded, failed.",
            "ops",
            [
                Query(_outcome_rate("celery_task_sent_total"), "sent"),
                Query(_outcome_rate("celery_task_started_total"), "started"),
                Query(_outcome_rate("celery_task_succeeded_total"), "succeeded"),
                Query(or_zero(_outcome_rate("celery_task_failed_total")), "failed"),
            ],
        ),
        timeseries_panel(
            "Retried, rejected, revoked",
            "Tasks per second that were retried, rejected by a worker or revoked. Flat at 0"
            " when none happened.",
            "ops",
            [
                Query(or_zero(_outcome_rate(f"celery_task_{outcome}_total")), outcome)
                for outcome in ("retried", "rejected", "revoked")
            ],
        ),
    ]
    errors = [
        shared.failure_ratio_against_budget(options, "Failed over finished tasks", *SELECTED),
        timeseries_panel(
            "Failures by exception",
            "Failed tasks per second by task and exception class.",
            "ops",
            [
                Query(
                    or_zero(
                        sum_by(
                            ["name", "exception"],
                            fleet_rate(sel("celery_task_failed_total", *SELECTED)),
                        )
                    ),
                    "{{name}}: {{exception}}",
                )
            ],
        ),
    ]
    duration = [
        timeseries_panel(
            "Runtime",
            "Time spent running, succeeded and failed tasks alike, at the 50th, 95th and 99th"
            " percentile.",
            "s",
            percentiles("fleetops_task_runtime_seconds_bucket", *SELECTED),
            width=8,
        ),
        timeseries_panel(
            "Queue wait p95",
            "95th percentile of the time from sent to started, by task.",
            "s",
            [_p95_by_task("celery_task_queue_wait_time_bucket")],
            width=8,
        ),
        timeseries_panel(
            "End-to-end latency p95",
            "95th percentile of the time from sent to done, by task. "
            + describe_levels(current().task_latency),
            "s",
            [_p95_by_task("fleetops_task_latency_seconds_bucket")],
            width=8,
            with_breaking_points="task_latency",
            links=options.runbooks(Topic.TASK_LATENCY),
        ),
    ]
    placement = [
        timeseries_panel(
            "Succeeded by worker",
            "Where the selected tasks run: successes per second by worker. Click a series for"
            " its worker dashboard.",
            "ops",
            [
                Query(
                    sum_by(
                        list(BY_WORKER), fleet_rate(sel("celery_task_succeeded_total", *SELECTED))
                    ),
                    WORKER_LEGEND,
                )
            ],
            width=24,
            data_links=[to_worker],
        )
    ]
    return assemble(
        Uid.TASK,
        "Task",
        "One task name or several: rate, errors and duration from sent to done; tasks orphaned,"
        " stuck or run twice, and the visibility-timeout trap.",
        [variables.job(), variables.queue(), variables.task()],
        [
            ("Rate", rates),
            ("Errors", errors),
            ("Duration", duration),
            ("Workers", placement),
            ("Task faults", task_faults.row(options, *SELECTED)),
        ],
    )
