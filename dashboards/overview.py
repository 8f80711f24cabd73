"""Fleet overview: every queue against its breaking points, the RED of tasks, the USE of
workers and the alerts firing now; each series drills down to its own dashboard."""

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
    stat_panel,
    table_panel,
    timeseries_panel,
    up_thresholds,
    value_thresholds,
)
from dashboards.promql import JOB, QUEUE, or_zero, rate, sel, sum_by
from dashboards.queries import error_budget, failure_ratio, latency_quantiles
from dashboards.runbooks import Topic, runbook_links
from fleetops.breaking_points import BreakingPoints, current

BEAT_LAST_RUN = "fleetops_beat_last_run_timestamp_seconds"
BEAT_INTERVAL = "fleetops_beat_interval_seconds"


def build(options: BuildOptions) -> models.Dashboard:
    points: BreakingPoints = current()
    runbooks = options.runbook_base_url
    missed = points.objectives.beat_missed_after_intervals
    to_queue = drill_down(Uid.QUEUE, "Queue ${__field.labels.queue_name}", queue="queue_name")
    to_worker = drill_down(Uid.WORKER, "Worker ${__field.labels.hostname}", worker="hostname")

    queues = [
        timeseries_panel(
            "Queue depth",
            "Messages waiting per queue, all priority sub-queues summed. "
            + describe_levels(points.queue_depth)
            + " Dashed lines are the same levels as served by the exporter.",
            "short",
            [
                Query(
                    sum_by(["queue_name"], sel("celery_queue_length", JOB, QUEUE)),
                    "{{queue_name}}",
                )
            ],
            thresholds=signal_thresholds(points.queue_depth),
            with_breaking_points="queue_depth",
            links=runbook_links(Topic.QUEUE_DEPTH, runbooks),
            data_links=[to_queue],
        ),
        timeseries_panel(
            "Time to drain",
            "Estimated seconds until each queue is empty at the current completion and arrival"
            " rates (+Inf: not draining). Above the task latency limits, the last task waits"
            " longer than allowed. " + describe_levels(points.task_latency),
            "s",
            [
                Query(
                    f"max by (queue_name) ({sel('fleetops_queue_drain_seconds', JOB, QUEUE)})",
                    "{{queue_name}}",
                )
            ],
            width=6,
            thresholds=signal_thresholds(points.task_latency),
            links=runbook_links(Topic.QUEUE_DRAIN, runbooks),
            data_links=[to_queue],
        ),
        timeseries_panel(
            "Arrival vs completion",
            "Tasks sent to and finished from each queue per second (1 minute window). Arrivals"
            " above completions mean the backlog grows.",
            "ops",
            [
                Query(
                    sum_by(["queue_name"], sel("fleetops_queue_arrival_rate", JOB, QUEUE)),
                    "{{queue_name}} arrivals",
                ),
                Query(
                    sum_by(["queue_name"], sel("fleetops_queue_completion_rate", JOB, QUEUE)),
                    "{{queue_name}} completions",
                ),
            ],
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
            latency_quantiles(JOB, QUEUE),
            thresholds=signal_thresholds(points.task_latency),
            with_breaking_points="task_latency",
            links=runbook_links(Topic.TASK_LATENCY, runbooks),
        ),
        timeseries_panel(
            "Failure ratio",
            "Failed tasks over finished tasks on the selected queues, against the error budget"
            f" of the {points.objectives.task_success_ratio:.3%} success objective"
            f" ({points.objectives.error_budget:.3%}).",
            "percentunit",
            [Query(failure_ratio(JOB, QUEUE), "failure ratio"), error_budget()],
            width=6,
            thresholds=value_thresholds((points.objectives.error_budget, "red")),
            links=runbook_links(Topic.TASK_FAILURES, runbooks),
        ),
        timeseries_panel(
            "Throughput",
            "Tasks finished per second on the selected queues, by outcome.",
            "ops",
            [
                Query(f"sum({rate(sel('celery_task_succeeded_total', JOB, QUEUE))})", "succeeded"),
                Query(
                    or_zero(f"sum({rate(sel('celery_task_failed_total', JOB, QUEUE))})"),
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
            "short",
            [Query(f"sum({sel('celery_worker_up', JOB)})", "workers up")],
            width=4,
            height=8,
            thresholds=up_thresholds(),
            links=runbook_links(Topic.WORKERS_UP, runbooks),
        ),
        timeseries_panel(
            "Worker memory",
            "Resident memory of each worker (main process and pool children) as a percent of"
            " its limit. " + describe_levels(points.worker_memory),
            "percent",
            [
                Query(
                    f"max by (hostname) ({sel('fleetops_worker_memory_percent', JOB)})",
                    "{{hostname}}",
                )
            ],
            width=8,
            thresholds=signal_thresholds(points.worker_memory),
            with_breaking_points="worker_memory",
            links=runbook_links(Topic.WORKER_MEMORY, runbooks),
            data_links=[to_worker],
        ),
        timeseries_panel(
            "Pool utilisation",
            "Tasks running over pool processes, over all workers. Near 100% new tasks wait.",
            "percentunit",
            [
                Query(
                    f"sum({sel('celery_worker_tasks_active', JOB)})"
                    f" / sum({sel('fleetops_worker_pool_size', JOB)})",
                    "busy",
                )
            ],
            width=6,
            max_value=1,
        ),
        timeseries_panel(
            "Beat: runs overdue",
            "Seconds since each periodic task was last sent, in units of its interval. Above"
            f" {missed:g} a run was missed (objective from fleetops/breaking_points.toml).",
            "short",
            [
                Query(
                    f"max by (name) ((time() - {sel(BEAT_LAST_RUN, JOB)})"
                    f" / {sel(BEAT_INTERVAL, JOB)})",
                    "{{name}}",
                )
            ],
            width=6,
            thresholds=value_thresholds((missed, "red")),
            links=runbook_links(Topic.BEAT, runbooks),
        ),
    ]
    alerts = [
        table_panel(
            "Firing alerts",
            "Alerts firing now in Prometheus, with their severity and the queue or worker they"
            " are about. Each alert's runbook is linked from the panels above.",
            "short",
            [
                Query(
                    sum_by(
                        ["alertname", "severity", "queue_name", "hostname"],
                        'ALERTS{alertstate="firing"}',
                    ),
                    "{{alertname}}",
                )
            ],
            width=24,
        )
    ]
    dashboard = new_dashboard(
        Uid.OVERVIEW,
        "Fleet overview",
        "The fleet against its breaking points: queues, tasks, workers and firing alerts.",
        [variables.job(), variables.queue()],
    )
    return finish(
        with_rows(
            dashboard,
            [
                ("Queues: saturation", queues),
                ("Tasks: rate, errors, duration", tasks),
                ("Workers and Beat", workers),
                ("Alerts", alerts),
            ],
        )
    )
