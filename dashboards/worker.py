"""Worker drill-down (USE): availability, pool utilisation, memory, errors and runtime."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as models

from dashboards import shared, variables
from dashboards.base import BuildOptions, assemble
from dashboards.config import Uid
from dashboards.panels import Query, stat_panel, timeseries_panel
from dashboards.promql import (
    BY_WORKER,
    JOB,
    WORKER,
    WORKER_LEGEND,
    fleet_quantile,
    fleet_rate,
    or_zero,
    sel,
    sum_by,
)
from dashboards.queries import per_worker
from dashboards.runbooks import Topic


def _rate_per_worker(counter: str) -> str:
    return sum_by(list(BY_WORKER), fleet_rate(sel(counter, JOB, WORKER)))


def build(options: BuildOptions) -> models.Dashboard:
    availability = [
        stat_panel(
            "Up",
            "1 while the worker's heartbeats arrive, 0 once they stop.",
            Query(per_worker("celery_worker_up"), WORKER_LEGEND),
            width=6,
            links=options.runbooks(Topic.WORKERS_UP),
        ),
        timeseries_panel(
            "Heartbeat age",
            "Seconds since the last heartbeat. Celery marks a worker offline after 60 s.",
            "s",
            [Query(per_worker("fleetops_worker_heartbeat_age_seconds", least=True), WORKER_LEGEND)],
            width=9,
        ),
        timeseries_panel(
            "Processed",
            "Tasks processed per second by each worker.",
            "ops",
            [Query(_rate_per_worker("fleetops_worker_processed_total"), WORKER_LEGEND)],
            width=9,
        ),
    ]
    utilisation = [
        timeseries_panel(
            "Active tasks vs pool",
            "Tasks running now against the pool processes that can run them.",
            "short",
            [
                Query(per_worker("celery_worker_tasks_active", "sum"), f"{WORKER_LEGEND} active"),
                Query(per_worker("fleetops_worker_pool_size", "sum"), f"{WORKER_LEGEND} pool"),
            ],
            width=8,
        ),
        shared.worker_memory(
            options,
            "Memory",
            "Resident memory (main process and pool children) as a percent of the worker's limit. ",
            JOB,
            WORKER,
        ),
        timeseries_panel(
            "Memory: resident vs limit",
            "Resident bytes and the limit they are measured against (cgroup limit, else host"
            " memory).",
            "bytes",
            [
                Query(per_worker("fleetops_worker_memory_rss_bytes"), f"{WORKER_LEGEND} resident"),
                Query(per_worker("fleetops_worker_memory_limit_bytes"), f"{WORKER_LEGEND} limit"),
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
                    _rate_per_worker("celery_task_succeeded_total"), f"{WORKER_LEGEND} succeeded"
                ),
                Query(
                    or_zero(_rate_per_worker("celery_task_failed_total")), f"{WORKER_LEGEND} failed"
                ),
            ],
        ),
        timeseries_panel(
            "Runtime p95",
            "95th percentile runtime of the tasks each worker completed.",
            "s",
            [
                Query(
                    fleet_quantile(0.95, sel("celery_task_runtime_bucket", JOB, WORKER), BY_WORKER),
                    WORKER_LEGEND,
                )
            ],
        ),
    ]
    return assemble(
        Uid.WORKER,
        "Worker",
        "One worker or several: up, busy, memory against the breaking points, outcomes.",
        [variables.job(), variables.worker()],
        [
            ("Availability", availability),
            ("Utilisation and saturation", utilisation),
            ("Errors and duration", errors_and_duration),
        ],
    )
