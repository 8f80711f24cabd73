"""Template variables: the data source first, then cascading label_values() variables that
refresh when the time range changes (job -> queue -> worker -> task)."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import DatasourceVariable, QueryVariable
from grafana_foundation_sdk.models.dashboard import VariableRefresh, VariableSort

from dashboards import promql
from dashboards.panels import DATASOURCE

ALL = ".*"


def datasource_variable() -> DatasourceVariable:
    return (
        DatasourceVariable("datasource")
        .label("Data source")
        .description("The Prometheus that scrapes the fleetops exporter and Flower.")
        .type("prometheus")
    )


def label_values_variable(
    name: str, label_text: str, selector: str, label: str, description: str
) -> QueryVariable:
    return (
        QueryVariable(name)
        .label(label_text)
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


def job() -> QueryVariable:
    # Every fleetops exporter serves its breaking points, whatever the state of the fleet.
    return label_values_variable(
        "job", "Job", "fleetops_breaking_point", "job", "Prometheus job of the fleetops exporter."
    )


def queue() -> QueryVariable:
    return label_values_variable(
        "queue",
        "Queue",
        promql.sel("celery_queue_length", promql.JOB),
        "queue_name",
        "Broker queue.",
    )


def worker() -> QueryVariable:
    return label_values_variable(
        "worker",
        "Worker",
        promql.sel("celery_worker_up", promql.JOB),
        "hostname",
        "Worker node name.",
    )


def task() -> QueryVariable:
    return label_values_variable(
        "task",
        "Task",
        promql.sel("celery_task_sent_total", promql.JOB, promql.QUEUE),
        "name",
        "Task name, among the tasks sent to the selected queues.",
    )


def flower_job() -> QueryVariable:
    return label_values_variable(
        "job", "Job", "flower_events_total", "job", "Prometheus job of Flower."
    )


def flower_worker() -> QueryVariable:
    return label_values_variable(
        "worker",
        "Worker",
        promql.sel("flower_worker_online", promql.JOB),
        "worker",
        "Worker node name, as Flower reports it.",
    )


def flower_task() -> QueryVariable:
    return label_values_variable(
        "task",
        "Task",
        promql.sel("flower_task_runtime_seconds_count", promql.JOB),
        "task",
        "Task name, among the tasks Flower saw finish.",
    )


def recorder_job() -> QueryVariable:
    return label_values_variable(
        "recorder_job",
        "Recorder job",
        "fleetops_history_database_up",
        "job",
        "Prometheus job of the task-history recorder (fleetops recorder).",
    )


def exporter_job() -> QueryVariable:
    return label_values_variable(
        "job",
        "Job",
        "fleetops_exporter_series",
        "job",
        "Prometheus job of the fleetops exporter.",
    )
