"""Flower's own metrics, next to the exporter's, so both event feeds stay visible.

Flower labels workers ``worker`` and task names ``task`` (flower/events.py); its series carry
the job Prometheus scrapes Flower under.
"""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as models

from dashboards import variables
from dashboards.base import BuildOptions, finish, new_dashboard, with_rows
from dashboards.config import Uid
from dashboards.panels import Query, stat_panel, timeseries_panel, up_thresholds
from dashboards.promql import FLOWER_TASK, FLOWER_WORKER, JOB, quantile, rate, sel, sum_by
from dashboards.runbooks import Topic, runbook_links

EXECUTING = "flower_worker_number_of_currently_executing_tasks"
TASK_EVENTS = 'type=~"task-.*"'


def build(options: BuildOptions) -> models.Dashboard:
    runbooks = options.runbook_base_url

    workers = [
        stat_panel(
            "Workers online",
            "Workers Flower sees online (flower_worker_online).",
            "short",
            [Query(f"sum({sel('flower_worker_online', JOB, FLOWER_WORKER)})", "online")],
            width=6,
            height=8,
            thresholds=up_thresholds(),
            links=runbook_links(Topic.FLOWER, runbooks),
        ),
        timeseries_panel(
            "Events by type",
            "Events Flower received per second, by event type (flower_events_total).",
            "ops",
            [
                Query(
                    sum_by(["type"], rate(sel("flower_events_total", JOB, FLOWER_WORKER))),
                    "{{type}}",
                )
            ],
            width=18,
        ),
        timeseries_panel(
            "Executing tasks",
            "Tasks each worker is executing now, as Flower counts them.",
            "short",
            [
                Query(
                    sum_by(
                        ["worker"],
                        sel(EXECUTING, JOB, FLOWER_WORKER),
                    ),
                    "{{worker}}",
                )
            ],
        ),
        timeseries_panel(
            "Prefetched tasks",
            "Tasks received by a worker and not started yet (flower_worker_prefetched_tasks).",
            "short",
            [
                Query(
                    sum_by(
                        ["worker"],
                        sel("flower_worker_prefetched_tasks", JOB, FLOWER_WORKER, FLOWER_TASK),
                    ),
                    "{{worker}}",
                )
            ],
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
                        0.95,
                        sel("flower_task_runtime_seconds_bucket", JOB, FLOWER_WORKER, FLOWER_TASK),
                        ("task",),
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
                    "max by (task) ("
                    + sel("flower_task_prefetch_time_seconds", JOB, FLOWER_WORKER, FLOWER_TASK)
                    + ")",
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
                    f"sum({rate(sel('flower_events_total', JOB, TASK_EVENTS))})",
                    "Flower",
                ),
                Query(
                    f"sum({rate(sel('fleetops_exporter_events_total', TASK_EVENTS))})",
                    "fleetops exporter",
                ),
            ],
            width=24,
            links=runbook_links(Topic.EVENTS, runbooks),
        ),
    ]
    dashboard = new_dashboard(
        Uid.FLOWER,
        "Flower",
        "Flower's own Prometheus metrics: workers, events, runtime and prefetching.",
        [variables.flower_job(), variables.flower_worker(), variables.flower_task()],
    )
    return finish(with_rows(dashboard, [("Workers", workers), ("Tasks", tasks)]))
