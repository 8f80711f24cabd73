"""Template variables: the data source first, then cascading label_values() variables that
refresh when the time range changes (job -> queue -> worker -> task)."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import DatasourceVariable, QueryVariable
from grafana_foundation_sdk.models.dashboard import VariableRefresh, VariableSort

from dashboards.panels import DATASOURCE
from dashboards.promql import APP, APP_OR_NONE, JOB, QUEUE, sel
from fleetops.apps import APP_LABEL

ALL = ".*"
# Every app's exporter pipeline serves its breaking points, whatever the state of its fleet.
APP_METRIC = "fleetops_breaking_point"


def datasource_variable() -> DatasourceVariable:
    return (
        DatasourceVariable("datasource")
        .label("Data source")
        .description("The Prometheus that scrapes the fleetops exporter and Flower.")
        .type("prometheus")
    )


def label_values_variable(name: str, selector: str, label: str, description: str) -> QueryVariable:
    """The values ``label`` takes on the series ``selector`` matches, labelled after ``name``."""
    return (
        QueryVariable(name)
        .label(name.replace("_", " ").capitalize())
        .description(description)
        .query(f"label_values({selector}, {label})")
        .datasource(DATASOURCE)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        # Every query matches with =~, so "All" is a regex that matches any value.
        .all_value(ALL)
    )


def app() -> QueryVariable:
    """The Celery apps (fleetops/apps.py); the first variable, every other one follows it.
    All (".*") also matches series without the label, so one unlabelled app still shows."""
    return label_values_variable(
        APP_LABEL, APP_METRIC, APP_LABEL, "Celery app (FLEETOPS_APP_NAME, FLEETOPS_APPS)."
    )


def _job(metric: str, description: str, name: str = "job", app: str = APP) -> QueryVariable:
    """The Prometheus job of the process that serves ``metric`` (app: see promql.sel)."""
    return label_values_variable(name, sel(metric, app=app), "job", description)


def job() -> QueryVariable:
    # Every fleetops exporter serves its breaking points, whatever the state of the fleet.
    return _job("fleetops_breaking_point", "Prometheus job of the fleetops exporter.")


def exporter_job() -> QueryVariable:
    return _job("fleetops_exporter_series", "Prometheus job of the fleetops exporter.")


def recorder_job() -> QueryVariable:
    return _job(
        "fleetops_history_database_up",
        "Prometheus job of the task-history recorder (fleetops recorder).",
        name="recorder_job",
        app=APP_OR_NONE,
    )


def flower_job() -> QueryVariable:
    return _job("flower_events_total", "Prometheus job of Flower.", app=APP_OR_NONE)


def queue() -> QueryVariable:
    return label_values_variable(
        "queue", sel("celery_queue_length", JOB), "queue_name", "Broker queue."
    )


def worker() -> QueryVariable:
    return label_values_variable(
        "worker", sel("celery_worker_up", JOB), "hostname", "Worker node name."
    )


def task() -> QueryVariable:
    return label_values_variable(
        "task",
        sel("celery_task_sent_total", JOB, QUEUE),
        "name",
        "Task name, among the tasks sent to the selected queues.",
    )


def _flower(name: str, metric: str, description: str) -> QueryVariable:
    # Flower labels its series with the variable's own name (worker, task).
    return label_values_variable(name, sel(metric, JOB, app=APP_OR_NONE), name, description)


def flower_worker() -> QueryVariable:
    return _flower("worker", "flower_worker_online", "Worker node name, as Flower reports it.")


def flower_task() -> QueryVariable:
    return _flower(
        "task", "flower_task_runtime_seconds_count", "Task name, among the tasks Flower saw finish."
    )
