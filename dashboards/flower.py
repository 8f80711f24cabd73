"""Flower's own metrics, next to the exporter's, so both event feeds stay visible.

Flower labels workers ``worker`` and task names ``task`` (flower/events.py); its series carry
the job Prometheus scrapes Flower under.
"""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as models

from dashboards import variables
from dashboards.base import BuildOptions, assemble
from dashboards.config import Uid
from dashboards.panels import Query, stat_panel, timeseries_panel
from dashboards.promql import (
    APP_OR_NONE,
    FLOWER_TASK,
    FLOWER_WORKER,
    JOB,
    fleet_rate,
    max_by,
    quantile,
    rate,
    sel,
    sum_by,
)
from dashboards.runbooks import Topic

TASK_EVENTS = 'type=~"task-.*"'


def _flower(metric: str, *matchers: str) -> str:
    """A Flower series under the dashboard's job and worker (and any further matchers)."""
    # Flower knows nothing of apps: its series carry none unless the scrape adds one.
    return sel(metric, JOB, FLOWER_WORKER, *matchers, app=APP_OR_NONE)


_flower_events = sel("flower_events_total", JOB, TASK_EVENTS, app=APP_OR_NONE)


def _per_worker(metric: str, *matchers: str) -> Query:
    return Query(sum_by(["worker"], _flower(metric, *matchers)), "{{worker}}")


def build(options: BuildOptions) -> models.Dashboard:
    workers = [
        stat_panel(
            "Workers online",
            "Workers Flower sees online (flower_worker_online).",
            Query(f"sum({_flower('flower_worker_online')})", "online"),
            width=6,
            links=options.runbooks(Topic.FLOWER),
        ),
        timeseries_panel(
            "Events by type",
            "Events Flower received per second, by event type (flower_events_total).",
            "ops",
            [Query(sum_by(["type"], rate(_flower("flower_events_total"))), "{{type}}")],
            width=18,
        ),
        timeseries_panel(
            "Executing tasks",
            "Tasks each worker is executing now, as Flower counts them.",
            "short",
            [_per_worker("flower_worker_number_of_currently_executing_tasks")],
        ),
        timeseries_panel(
            "Prefetched tasks",
            "Tasks received by a worker and not started yet (flower_worker_prefetched_tasks).",
            "short",
            [_per_worker("flower_worker_prefetched_tasks", FLOWER_TASK)],
        ),
    ]
    tasks = [
        timeseries_panel(
            "Task runtime p95",
            "95th percentile runtime by task, from Flower's histogram"
            " (flower_task_runtime_seconds).",
            "s",
            [
                Query(
                    quantile(
                        0.95, _flower("flower_task_runtime_seconds_bucket", FLOWER_TASK), ("task",)
                    ),
                    "{{task}}",
                )
            ],
        ),
        timeseries_panel(
            "Prefetch time",
            "How long the last task of each name waited at its worker between received and"
            " started (flower_task_prefetch_time_seconds).",
            "s",
            [
                Query(
                    max_by(["task"], _flower("flower_task_prefetch_time_seconds", FLOWER_TASK)),
                    "{{task}}",
                )
            ],
        ),
        timeseries_panel(
            "Task events: Flower vs fleetops exporter",
            "Task events per second as counted by Flower and by the fleetops exporter. The two"
            " feeds read the same stream; a gap means one of them falls behind or drops events.",
            "ops",
            [
                Query(
                    f"sum({rate(sel('flower_events_total', JOB, TASK_EVENTS, app=APP_OR_NONE))})",
                    "Flower",
                ),
                Query(
                    f"sum({fleet_rate(sel('fleetops_exporter_events_total', TASK_EVENTS))})",
                    "fleetops exporter",
                ),
            ],
            width=24,
            links=options.runbooks(Topic.EVENTS),
        ),
    ]
    return assemble(
        Uid.FLOWER,
        "Flower",
        "Flower's own Prometheus metrics: workers, events, runtime and prefetching.",
        [variables.flower_job(), variables.flower_worker(), variables.flower_task()],
        [("Workers", workers), ("Tasks", tasks)],
    )
