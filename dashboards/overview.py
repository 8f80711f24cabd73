"""Fleet overview: every queue against its breaking points, the RED of tasks, the USE of
workers and the alerts firing now; each series drills down to its own dashboard."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as models

from dashboards import shared, task_faults, variables
from dashboards.base import BuildOptions, assemble
from dashboards.config import Uid
from dashboards.links import drill_down
from dashboards.panels import (
    Query,
    describe_levels,
    stat_panel,
    table_panel,
    timeseries_panel,
    value_thresholds,
)
from dashboards.promql import APP_OR_NONE, JOB, QUEUE, fleet, fleet_rate, or_zero, sel, sum_by
from dashboards.queries import percentiles
from dashboards.runbooks import Topic
from fleetops.breaking_points import BreakingPoints, current

BEAT_NEXT_RUN = "fleetops_beat_next_run_timestamp_seconds"
BEAT_INTERVAL = "fleetops_beat_interval_seconds"


def build(options: BuildOptions) -> models.Dashboard:
    points: BreakingPoints = current()
    missed = points.objectives.beat_missed_after_intervals
    to_queue = drill_down(Uid.QUEUE, "Queue ${__field.labels.queue_name}", queue="queue_name")
    to_worker = drill_down(Uid.WORKER, "Worker ${__field.labels.hostname}", worker="hostname")

    queues = [
        shared.queue_depth(
            options,
            "Queue depth",
            "Messages waiting per queue, all priority sub-queues summed. ",
            after_levels=" Dashed lines are the same levels as served by the exporter.",
            data_links=[to_queue],
        ),
        shared.time_to_drain(
            options,
            "Estimated seconds until each queue is empty at the current completion and arrival"
            " rates (+Inf: not draining). Above the task latency limits, the last task waits"
            " longer than allowed. ",
            width=6,
            data_links=[to_queue],
        ),
        shared.arrival_vs_completion(
            "Tasks sent to and finished from each queue per second (1 minute window). Arrivals"
            " above completions mean the backlog grows.",
            width=6,
            data_links=[to_queue],
        ),
    ]
    tasks = [
        timeseries_panel(
            "End-to-end latency",
            "From task sent to task done, over the selected queues, at the 50th, 95th and 99th"
            " percentile. " + describe_levels(points.task_latency),
            "s",
            percentiles("fleetops_task_latency_seconds_bucket", JOB, QUEUE),
            with_breaking_points="task_latency",
            links=options.runbooks(Topic.TASK_LATENCY),
        ),
        shared.failure_ratio_against_budget(
            options,
            "Failed tasks over finished tasks on the selected queues",
            JOB,
            QUEUE,
            width=6,
        ),
        timeseries_panel(
            "Throughput",
            "Tasks finished per second on the selected queues, by outcome.",
            "ops",
            [
                Query(
                    f"sum({fleet_rate(sel('celery_task_succeeded_total', JOB, QUEUE))})",
                    "succeeded",
                ),
                Query(
                    or_zero(f"sum({fleet_rate(sel('celery_task_failed_total', JOB, QUEUE))})"),
                    "failed",
                ),
            ],
            width=6,
        ),
    ]
    workers = [
        stat_panel(
            "Workers up",
            "Workers whose heartbeats arrive. 0 means nothing consumes any queue.",
            Query(f"sum({fleet(sel('celery_worker_up', JOB))})", "workers up"),
            width=4,
            links=options.runbooks(Topic.WORKERS_UP),
        ),
        shared.worker_memory(
            options,
            "Worker memory",
            "Resident memory of each worker (main process and pool children) as a percent of"
            " its limit. ",
            JOB,
            data_links=[to_worker],
        ),
        timeseries_panel(
            "Pool utilisation",
            "Tasks running over pool processes, over all workers. Near 100% new tasks wait.",
            "percentunit",
            [
                Query(
                    f"sum({fleet(sel('celery_worker_tasks_active', JOB))})"
                    f" / sum({fleet(sel('fleetops_worker_pool_size', JOB))})",
                    "busy",
                )
            ],
            width=6,
            max_value=1,
        ),
        timeseries_panel(
            "Beat: runs overdue",
            "Seconds since each periodic task was last sent (or, if it never ran, since Beat"
            " scheduled it), in units of its interval, as CeleryBeatMissedRun counts them. Above"
            f" {missed:g} a run was missed (objective from fleetops/breaking_points.toml).",
            "short",
            [
                Query(
                    f"max by (name) ((time() - {fleet(sel(BEAT_NEXT_RUN, JOB))}"
                    f" + {fleet(sel(BEAT_INTERVAL, JOB))}) / {fleet(sel(BEAT_INTERVAL, JOB))})",
                    "{{name}}",
                )
            ],
            width=6,
            thresholds=value_thresholds((missed, "red")),
            links=options.runbooks(Topic.BEAT),
        ),
    ]
    alerts = [
        table_panel(
            "Firing alerts",
            "Alerts firing now in Prometheus, with their severity and the queue or worker they"
            " are about. Each alert's runbook is linked from the panels above.",
            "short",
            Query(
                sum_by(
                    ["alertname", "severity", "app", "queue_name", "hostname"],
                    # The selected apps' alerts and those of no app (the exporter, Prometheus):
                    # a fleet-wide alert concerns every app.
                    sel("ALERTS", 'alertstate="firing"', app=APP_OR_NONE),
                ),
                "{{alertname}}",
            ),
            width=20,
        ),
        task_faults.faults_now(options, JOB, QUEUE, width=4),
    ]
    return assemble(
        Uid.OVERVIEW,
        "Fleet overview",
        "The fleet against its breaking points: queues, tasks, workers and firing alerts.",
        [variables.job(), variables.queue()],
        [
            ("Queues: saturation", queues),
            ("Tasks: rate, errors, duration", tasks),
            ("Workers and Beat", workers),
            ("Alerts", alerts),
        ],
    )
