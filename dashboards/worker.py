"""Worker drill-down (USE): availability, pool utilisation, memory, errors and runtime."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as models

from dashboards import variables
from dashboards.base import BuildOptions, finish, new_dashboard, with_rows
from dashboards.config import Uid
from dashboards.panels import (
    Query,
    describe_levels,
    signal_thresholds,
    stat_panel,
    timeseries_panel,
    up_thresholds,
)
from dashboards.promql import JOB, WORKER, or_zero, quantile, rate, sel, sum_by
from dashboards.runbooks import Topic, runbook_links
from fleetops.breaking_points import current


def _per_worker(metric: str, aggregation: str = "max") -> str:
    return f"{aggregation} by (hostname) ({sel(metric, JOB, WORKER)})"


def build(options: BuildOptions) -> models.Dashboard:
    points = current()
    runbooks = options.runbook_base_url

    availability = [
        stat_panel(
            "Up",
            "1 while the worker's heartbeats arrive, 0 once they stop.",
            "short",
            [Query(_per_worker("celery_worker_up"), "{{hostname}}")],
            width=6,
            height=8,
            thresholds=up_thresholds(),
            links=runbook_links(Topic.WORKERS_UP, runbooks),
        ),
        timeseries_panel(
            "Heartbeat age",
            "Seconds since the last heartbeat. Celery marks a worker offline after 60 s.",
            "s",
            [Query(_per_worker("fleetops_worker_heartbeat_age_seconds"), "{{hostname}}")],
            width=9,
        ),
        timeseries_panel(
            "Processed",
            "Tasks processed per second by each worker.",
            "ops",
            [
                Query(
                    sum_by(["hostname"], rate(sel("fleetops_worker_processed_total", JOB, WORKER))),
                    "{{hostname}}",
                )
            ],
            width=9,
        ),
    ]
    utilisation = [
        timeseries_panel(
            "Active tasks vs pool",
            "Tasks running now against the pool processes that can run them.",
            "short",
            [
                Query(_per_worker("celery_worker_tasks_active", "sum"), "{{hostname}} active"),
                Query(_per_worker("fleetops_worker_pool_size", "sum"), "{{hostname}} pool"),
            ],
            width=8,
        ),
        timeseries_panel(
            "Memory",
            "Resident memory (main process and pool children) as a percent of the worker's"
            " limit. " + describe_levels(points.worker_memory),
            "percent",
            [Query(_per_worker("fleetops_worker_memory_percent"), "{{hostname}}")],
            width=8,
            thresholds=signal_thresholds(points.worker_memory),
            with_breaking_points="worker_memory",
            links=runbook_links(Topic.WORKER_MEMORY, runbooks),
        ),
        timeseries_panel(
            "Memory: resident vs limit",
            "Resident bytes and the limit they are measured against (cgroup limit, else host"
            " memory).",
            "bytes",
            [
                Query(_per_worker("fleetops_worker_memory_rss_bytes"), "{{hostname}} resident"),
                Query(_per_worker("fleetops_worker_memory_limit_bytes"), "{{hostname}} limit"),
            ],
            width=8,
        ),
    ]
    errors_and_duration = [
        timeseries_panel(
            "Outcomes",
            "Tasks that succeeded and failed per second on each worker.",
            "ops",
            [
                Query(
                    sum_by(["hostname"], rate(sel("celery_task_succeeded_total", JOB, WORKER))),
                    "{{hostname}} succeeded",
                ),
                Query(
                    or_zero(
                        sum_by(["hostname"], rate(sel("celery_task_failed_total", JOB, WORKER)))
                    ),
                    "{{hostname}} failed",
                ),
            ],
        ),
        timeseries_panel(
            "Runtime p95",
            "95th percentile runtime of the tasks each worker completed.",
            "s",
            [
                Query(
                    quantile(0.95, sel("celery_task_runtime_bucket", JOB, WORKER), ("hostname",)),
                    "{{hostname}}",
                )
            ],
        ),
    ]
    dashboard = new_dashboard(
        Uid.WORKER,
        "Worker",
        "One worker or several: up, busy, memory against the breaking points, outcomes.",
        [variables.job(), variables.worker()],
    )
    return finish(
        with_rows(
            dashboard,
            [
                ("Availability", availability),
                ("Utilisation and saturation", utilisation),
                ("Errors and duration", errors_and_duration),
            ],
        )
    )
