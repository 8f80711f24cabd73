"""Task drill-down (RED): rate by outcome, errors by exception, runtime, wait and latency."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as models

from dashboards import variables
from dashboards.base import BuildOptions, finish, new_dashboard, with_rows
from dashboards.config import Uid
from dashboards.links import drill_down
from dashboards.panels import (
    Query,
    describe_levels,
    signal_thresholds,
    timeseries_panel,
    value_thresholds,
)
from dashboards.promql import JOB, QUEUE, TASK, or_zero, quantile, rate, sel, sum_by
from dashboards.queries import error_budget, failure_ratio
from dashboards.runbooks import Topic, runbook_links
from fleetops.breaking_points import current

SELECTED = (JOB, QUEUE, TASK)


def _outcome_rate(metric: str) -> str:
    return f"sum({rate(sel(metric, *SELECTED))})"


def build(options: BuildOptions) -> models.Dashboard:
    points = current()
    runbooks = options.runbook_base_url
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
                Query(or_zero(_outcome_rate("celery_task_retried_total")), "retried"),
                Query(or_zero(_outcome_rate("celery_task_rejected_total")), "rejected"),
                Query(or_zero(_outcome_rate("celery_task_revoked_total")), "revoked"),
            ],
        ),
    ]
    errors = [
        timeseries_panel(
            "Failure ratio",
            "Failed over finished tasks, against the error budget of the"
            f" {points.objectives.task_success_ratio:.3%} success objective"
            f" ({points.objectives.error_budget:.3%}).",
            "percentunit",
            [Query(failure_ratio(*SELECTED), "failure ratio"), error_budget()],
            thresholds=value_thresholds((points.objectives.error_budget, "red")),
            links=runbook_links(Topic.TASK_FAILURES, runbooks),
        ),
        timeseries_panel(
            "Failures by exception",
            "Failed tasks per second by task and exception class.",
            "ops",
            [
                Query(
                    or_zero(
                        sum_by(
                            ["name", "exception"],
                            rate(sel("celery_task_failed_total", *SELECTED)),
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
            [
                Query(
                    quantile(q, sel("fleetops_task_runtime_seconds_bucket", *SELECTED)),
                    f"p{round(q * 100)}",
                )
                for q in (0.5, 0.95, 0.99)
            ],
            width=8,
        ),
        timeseries_panel(
            "Queue wait p95",
            "95th percentile of the time from sent to started, by task.",
            "s",
            [
                Query(
                    quantile(0.95, sel("celery_task_queue_wait_time_bucket", *SELECTED), ("name",)),
                    "{{name}}",
                )
            ],
            width=8,
        ),
        timeseries_panel(
            "End-to-end latency p95",
            "95th percentile of the time from sent to done, by task. "
            + describe_levels(points.task_latency),
            "s",
            [
                Query(
                    quantile(
                        0.95, sel("fleetops_task_latency_seconds_bucket", *SELECTED), ("name",)
                    ),
                    "{{name}}",
                )
            ],
            width=8,
            thresholds=signal_thresholds(points.task_latency),
            with_breaking_points="task_latency",
            links=runbook_links(Topic.TASK_LATENCY, runbooks),
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
                    sum_by(["hostname"], rate(sel("celery_task_succeeded_total", *SELECTED))),
                    "{{hostname}}",
                )
            ],
            width=24,
            data_links=[to_worker],
        )
    ]
    dashboard = new_dashboard(
        Uid.TASK,
        "Task",
        "One task name or several: rate, errors and duration from sent to done.",
        [variables.job(), variables.queue(), variables.task()],
    )
    return finish(
        with_rows(
            dashboard,
            [
                ("Rate", rates),
                ("Errors", errors),
                ("Duration", duration),
                ("Workers", placement),
            ],
        )
    )
