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


def _task_hosts() -> str:
    """The `hostname` values the task counters of the selected workers carry.

    The $worker variable lists workers (celery_worker_up). With worker groups the exporter counts
    tasks under the worker's group, which it puts in `worker_group` on the worker's own series;
    without groups, under the worker's hostname. Both, per app."""
    up = sel("celery_worker_up", JOB, WORKER, 'worker_group!=""')
    groups = (
        f"label_replace(max by (app, worker_group) ({up}),"
        ' "hostname", "$1", "worker_group", "(.+)")'
    )
    return f"{groups} or max by (app, hostname) ({sel('celery_worker_up', JOB, WORKER)})"


def task_rate_per_worker(counter: str) -> str:
    """A task counter's rate for the selected workers (their groups' with worker groups)."""
    per_host = sum_by(list(BY_WORKER), fleet_rate(sel(counter, JOB)))
    return f"{per_host} and on (app, hostname) ({_task_hosts()})"


def task_quantile_per_worker(q: float, bucket: str) -> str:
    per_host = fleet_quantile(q, sel(bucket, JOB), BY_WORKER)
    return f"{per_host} and on (app, hostname) ({_task_hosts()})"


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
            "Tasks that succeeded and failed per second on each worker; with worker groups, on the"
            " selected workers' groups (the exporter counts tasks per group).",
            "ops",
            [
                Query(
                    task_rate_per_worker("celery_task_succeeded_total"),
                    f"{WORKER_LEGEND} succeeded",
                ),
                Query(
                    or_zero(task_rate_per_worker("celery_task_failed_total")),
                    f"{WORKER_LEGEND} failed",
                ),
            ],
        ),
        timeseries_panel(
            "Runtime p95",
            "95th percentile runtime of the tasks each worker (with worker groups: each selected"
            " worker's group) completed.",
            "s",
            [
                Query(
                    task_quantile_per_worker(0.95, "celery_task_runtime_bucket"),
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
