"""Queue drill-down (USE): depth, age, consumers, flow in and out, dead letters."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as models

from dashboards import shared, variables
from dashboards.base import BuildOptions, assemble
from dashboards.config import Uid
from dashboards.links import drill_down
from dashboards.panels import (
    Query,
    describe_levels,
    signal_thresholds,
    timeseries_panel,
    up_thresholds,
)
from dashboards.promql import (
    BY_QUEUE,
    JOB,
    QUEUE,
    QUEUE_LEGEND,
    fleet,
    fleet_quantile,
    fleet_rate,
    or_zero,
    sel,
    sum_by,
)
from dashboards.queries import per_queue
from dashboards.runbooks import Topic
from fleetops.breaking_points import current


def build(options: BuildOptions) -> models.Dashboard:
    latency = current().task_latency
    to_task = drill_down(Uid.TASK, "Task ${__field.labels.name}", keep=("queue",), task="name")

    saturation = [
        shared.queue_depth(
            options, "Depth", "Messages waiting in the queue, all priority sub-queues summed. "
        ),
        timeseries_panel(
            "Depth by priority",
            "Messages waiting per priority step (on Redis each step is its own sub-queue).",
            "short",
            [
                Query(
                    sum_by(
                        [*BY_QUEUE, "priority"],
                        fleet(sel("fleetops_queue_length_by_priority", JOB, QUEUE)),
                    ),
                    f"{QUEUE_LEGEND} priority {{{{priority}}}}",
                )
            ],
            stacked=True,
        ),
        timeseries_panel(
            "Oldest message age",
            "Age of the oldest waiting message: how late the next task to start already is. "
            + describe_levels(latency),
            "s",
            [
                Query(
                    per_queue("fleetops_queue_oldest_message_age_seconds", "max"),
                    QUEUE_LEGEND,
                )
            ],
            width=8,
            thresholds=signal_thresholds(latency),
            links=options.runbooks(Topic.TASK_LATENCY),
        ),
        timeseries_panel(
            "Reserved, not acknowledged",
            "Messages handed to a worker and not yet acknowledged (prefetched or running). They"
            " come back to the queue if their worker dies.",
            "short",
            [Query(per_queue("fleetops_queue_unacked"), QUEUE_LEGEND)],
            width=8,
        ),
        timeseries_panel(
            "Consumers",
            "Workers consuming the queue. Waiting messages with no consumer never run.",
            "short",
            [Query(per_queue("celery_active_consumer_count"), QUEUE_LEGEND)],
            width=8,
            thresholds=up_thresholds(),
            links=options.runbooks(Topic.QUEUE_CONSUMERS),
        ),
    ]
    flow = [
        shared.arrival_vs_completion(
            "Tasks sent to and finished from the queue per second (1 minute window)."
        ),
        shared.time_to_drain(
            options,
            "Estimated seconds until the queue is empty: length / (completion - arrival); +Inf"
            " when it is not draining. ",
        ),
        timeseries_panel(
            "Queue wait p95",
            "95th percentile of the time from task sent to task started, per queue.",
            "s",
            [
                Query(
                    fleet_quantile(
                        0.95,
                        sel("celery_task_queue_wait_time_bucket", JOB, QUEUE),
                        BY_QUEUE,
                    ),
                    QUEUE_LEGEND,
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
                    sum_by(["name"], fleet_rate(sel("celery_task_sent_total", JOB, QUEUE))),
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
            [Query(or_zero(per_queue("fleetops_dead_letter_length")), QUEUE_LEGEND)],
            width=24,
            links=options.runbooks(Topic.DEAD_LETTER),
        )
    ]
    return assemble(
        Uid.QUEUE,
        "Queue",
        "One queue or several: how full, how old, who consumes it and how fast it drains.",
        [variables.job(), variables.queue()],
        [("Saturation", saturation), ("Flow", flow), ("Dead letters", dead_letters)],
    )
