"""Queue drill-down (USE): depth, age, consumers, flow in and out, dead letters."""

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
    up_thresholds,
)
from dashboards.promql import JOB, QUEUE, or_zero, quantile, rate, sel, sum_by
from dashboards.runbooks import Topic, runbook_links
from fleetops.breaking_points import current


def _per_queue(metric: str, aggregation: str = "sum") -> str:
    return f"{aggregation} by (queue_name) ({sel(metric, JOB, QUEUE)})"


def build(options: BuildOptions) -> models.Dashboard:
    points = current()
    runbooks = options.runbook_base_url
    to_task = drill_down(Uid.TASK, "Task ${__field.labels.name}", keep=("queue",), task="name")

    saturation = [
        timeseries_panel(
            "Depth",
            "Messages waiting in the queue, all priority sub-queues summed. "
            + describe_levels(points.queue_depth),
            "short",
            [Query(_per_queue("celery_queue_length"), "{{queue_name}}")],
            thresholds=signal_thresholds(points.queue_depth),
            with_breaking_points="queue_depth",
            links=runbook_links(Topic.QUEUE_DEPTH, runbooks),
        ),
        timeseries_panel(
            "Depth by priority",
            "Messages waiting per priority step (on Redis each step is its own sub-queue).",
            "short",
            [
                Query(
                    sum_by(
                        ["queue_name", "priority"],
                        sel("fleetops_queue_length_by_priority", JOB, QUEUE),
                    ),
                    "{{queue_name}} priority {{priority}}",
                )
            ],
            stacked=True,
        ),
        timeseries_panel(
            "Oldest message age",
            "Age of the oldest waiting message: how late the next task to start already is. "
            + describe_levels(points.task_latency),
            "s",
            [
                Query(
                    _per_queue("fleetops_queue_oldest_message_age_seconds", "max"),
                    "{{queue_name}}",
                )
            ],
            width=8,
            thresholds=signal_thresholds(points.task_latency),
            links=runbook_links(Topic.TASK_LATENCY, runbooks),
        ),
        timeseries_panel(
            "Reserved, not acknowledged",
            "Messages handed to a worker and not yet acknowledged (prefetched or running). They"
            " come back to the queue if their worker dies.",
            "short",
            [Query(_per_queue("fleetops_queue_unacked"), "{{queue_name}}")],
            width=8,
        ),
        timeseries_panel(
            "Consumers",
            "Workers consuming the queue. Waiting messages with no consumer never run.",
            "short",
            [Query(_per_queue("celery_active_consumer_count"), "{{queue_name}}")],
            width=8,
            thresholds=up_thresholds(),
            links=runbook_links(Topic.QUEUE_CONSUMERS, runbooks),
        ),
    ]
    flow = [
        timeseries_panel(
            "Arrival vs completion",
            "Tasks sent to and finished from the queue per second (1 minute window).",
            "ops",
            [
                Query(_per_queue("fleetops_queue_arrival_rate"), "{{queue_name}} arrivals"),
                Query(_per_queue("fleetops_queue_completion_rate"), "{{queue_name}} completions"),
            ],
        ),
        timeseries_panel(
            "Time to drain",
            "Estimated seconds until the queue is empty: length / (completion - arrival); +Inf"
            " when it is not draining. " + describe_levels(points.task_latency),
            "s",
            [Query(_per_queue("fleetops_queue_drain_seconds", "max"), "{{queue_name}}")],
            thresholds=signal_thresholds(points.task_latency),
            links=runbook_links(Topic.QUEUE_DRAIN, runbooks),
        ),
        timeseries_panel(
            "Queue wait p95",
            "95th percentile of the time from task sent to task started, per queue.",
            "s",
            [
                Query(
                    quantile(
                        0.95,
                        sel("celery_task_queue_wait_time_bucket", JOB, QUEUE),
                        ("queue_name",),
                    ),
                    "{{queue_name}}",
                )
            ],
        ),
        timeseries_panel(
            "Sent by task",
            "Tasks sent to the queue per second, by task name. Click a series for its task"
            " dashboard.",
            "ops",
            [
                Query(
                    sum_by(["name"], rate(sel("celery_task_sent_total", JOB, QUEUE))),
                    "{{name}}",
                )
            ],
            data_links=[to_task],
        ),
    ]
    dead_letters = [
        timeseries_panel(
            "Dead-letter entries",
            "Tasks parked in the dead-letter queue after their last retry, by the queue they"
            " came from. They will not run again until someone requeues them.",
            "short",
            [
                Query(
                    or_zero(sum_by(["queue_name"], sel("fleetops_dead_letter_length", JOB, QUEUE))),
                    "{{queue_name}}",
                )
            ],
            width=24,
            links=runbook_links(Topic.DEAD_LETTER, runbooks),
        )
    ]
    dashboard = new_dashboard(
        Uid.QUEUE,
        "Queue",
        "One queue or several: how full, how old, who consumes it and how fast it drains.",
        [variables.job(), variables.queue()],
    )
    return finish(
        with_rows(
            dashboard,
            [("Saturation", saturation), ("Flow", flow), ("Dead letters", dead_letters)],
        )
    )
