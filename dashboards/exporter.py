"""Exporter health: is the fleetops exporter keeping up with the event stream, and what does
serving /metrics cost."""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.builders.dashboard import DashboardLink
from grafana_foundation_sdk.models import dashboard as models

from dashboards import variables
from dashboards.base import BuildOptions, finish, new_dashboard, with_rows
from dashboards.config import Uid
from dashboards.panels import (
    Query,
    stat_panel,
    timeseries_panel,
    up_thresholds,
    value_thresholds,
)
from dashboards.promql import JOB, RECORDER_JOB, or_zero, rate, sel, sum_by
from dashboards.runbooks import Topic, runbook_links


def build(options: BuildOptions) -> models.Dashboard:
    runbooks = options.runbook_base_url

    ingest = [
        _up_stat(
            "Scraped",
            "1 while Prometheus scrapes the exporter (the `up` series of its job).",
            Query(f"min({sel('up', JOB)})", "up"),
            runbook_links(Topic.EXPORTER, runbooks),
        ),
        _up_stat(
            "Broker",
            "1 while the broker answers the exporter.",
            Query(f"min({sel('fleetops_exporter_broker_up', JOB)})", "broker up"),
            runbook_links(Topic.BROKER, runbooks),
        ),
        _stalled_stat(
            "Stalled parts",
            "1 for a part of the exporter (reader, applier, poller) whose thread has died or"
            " made no progress for 45 s, while the process still answers: its metrics are"
            " frozen. FleetopsExporterStalled pages after 1 minute of it.",
            sel("fleetops_exporter_stalled", JOB),
        ),
        timeseries_panel(
            "Events",
            "Events consumed per second, by event type.",
            "ops",
            [Query(sum_by(["type"], rate(sel("fleetops_exporter_events_total", JOB))), "{{type}}")],
            width=6,
            height=4,
            links=runbook_links(Topic.EVENTS, runbooks),
        ),
        timeseries_panel(
            "Event lag",
            "Now minus the timestamp of the last event applied: how far behind the stream the"
            " metrics are.",
            "s",
            [Query(f"max({sel('fleetops_exporter_event_lag_seconds', JOB)})", "lag")],
            width=6,
            height=4,
        ),
        _rare_events(
            "Events rejected",
            "Events per second dropped because they could not be used (not JSON, no task id,"
            " unknown type...), by reason. Flat at 0 when none.",
            sel("fleetops_exporter_events_rejected_total", JOB),
            by="reason",
        ),
        _rare_events(
            "Events dropped",
            "Events lost per second (queue overflow, missed while re-subscribing), by reason."
            " Flat at 0 when none.",
            sel("fleetops_exporter_events_dropped_total", JOB),
            by="reason",
        ),
        _rare_events(
            "Broker reconnects",
            "Reconnects to the broker per second. Flat at 0 when the connection holds.",
            sel("fleetops_exporter_broker_reconnects_total", JOB),
            legend="reconnects",
        ),
    ]
    serving = [
        timeseries_panel(
            "Scrape duration",
            "Time the exporter took to render /metrics, and the whole scrape as Prometheus saw it.",
            "s",
            [
                Query(f"max({sel('fleetops_exporter_scrape_duration_seconds', JOB)})", "render"),
                Query(f"max({sel('scrape_duration_seconds', JOB)})", "Prometheus scrape"),
            ],
            width=8,
        ),
        timeseries_panel(
            "Series",
            "Series the exporter holds, and samples Prometheus took in the last scrape.",
            "short",
            [
                Query(f"sum({sel('fleetops_exporter_series', JOB)})", "held"),
                Query(f"sum({sel('scrape_samples_scraped', JOB)})", "scraped"),
            ],
            width=8,
        ),
        _rare_events(
            "Series refused",
            "Series per second refused because the series cap was reached. Flat at 0 when none.",
            sel("fleetops_exporter_series_limit_hits_total", JOB),
            legend="refused",
        ),
    ]
    dashboard = new_dashboard(
        Uid.EXPORTER,
        "Exporter health",
        "The fleetops exporter and task-history recorder themselves: events in, errors, lag,"
        " scrape cost, series count, and whether the history is being written.",
        [variables.exporter_job(), variables.recorder_job()],
    )
    rows = [("Ingest", ingest), ("Serving", serving), ("History recorder", _recorder(runbooks))]
    return finish(with_rows(dashboard, rows))


def _rare_events(
    title: str,
    description: str,
    counter: str,
    *,
    by: str | None = None,
    legend: str | None = None,
    links: Sequence[DashboardLink] = (),
) -> timeseries.Panel:
    """Per-second rate of a counter of rare trouble, flat at 0 (not "No data") when none."""
    return timeseries_panel(
        title,
        description,
        "ops",
        [Query(or_zero(sum_by([by] if by else [], rate(counter))), legend or f"{{{{{by}}}}}")],
        width=8,
        links=links,
    )


def _up_stat(title: str, description: str, query: Query, links: list[DashboardLink]) -> stat.Panel:
    """A 1-is-up stat of one pipeline part, linking the runbooks of its alerts."""
    return stat_panel(
        title, description, "short", [query], width=4, thresholds=up_thresholds(), links=links
    )


def _stalled_stat(title: str, description: str, gauge: str) -> stat.Panel:
    """Per part, 1 while it is stalled: green at 0, red from 1."""
    return stat_panel(
        title,
        description,
        "short",
        [Query(f"max by (part) ({gauge})", "{{part}}")],
        width=4,
        thresholds=value_thresholds((1, "red")),
    )


def _recorder(runbooks: str) -> list:
    def metric(name: str) -> str:
        return sel(name, RECORDER_JOB)

    return [
        _up_stat(
            "Recorder scraped",
            "1 while Prometheus scrapes the history recorder (the `up` series of its job).",
            Query(f"min({metric('up')})", "up"),
            runbook_links(Topic.HISTORY, runbooks),
        ),
        _up_stat(
            "History database",
            "1 while the recorder's last write to the history database succeeded.",
            Query(f"min({metric('fleetops_history_database_up')})", "database up"),
            runbook_links(Topic.HISTORY, runbooks),
        ),
        _stalled_stat(
            "Recorder stalled parts",
            "1 for a part of the recorder (reader, consumer, writer) whose thread has died or"
            " made no progress for 45 s, while the process still answers: events are not being"
            " recorded. FleetopsHistoryRecorderStalled pages after 1 minute of it.",
            metric("fleetops_history_stalled"),
        ),
        timeseries_panel(
            "Events recorded",
            "Events per second the recorder consumed and wrote to the database. Written falls"
            " behind consumed while the database is away; the backlog panel shows where they"
            " wait.",
            "ops",
            [
                Query(f"sum({rate(metric('fleetops_history_events_total'))})", "consumed"),
                Query(f"sum({rate(metric('fleetops_history_events_written_total'))})", "written"),
            ],
            width=6,
        ),
        timeseries_panel(
            "Backlog",
            "Events waiting to be written, by where they wait (memory, disk spool). Zero while"
            " the database keeps up.",
            "short",
            [
                Query(
                    sum_by(["where"], metric("fleetops_history_buffered_events")),
                    "{{where}}",
                )
            ],
            width=6,
        ),
        timeseries_panel(
            "Disk spool",
            "Bytes of events spooled to disk during a database outage, against the spool's"
            " bound. Past the bound, events are dropped (FleetopsHistoryEventsDropped).",
            "bytes",
            [
                Query(f"sum({metric('fleetops_history_spool_bytes')})", "spooled"),
                Query(f"sum({metric('fleetops_history_spool_limit_bytes')})", "bound"),
            ],
            width=8,
        ),
        _rare_events(
            "History events dropped",
            "Events per second the recorder lost because its buffer and spool were full, by"
            " reason. Flat at 0 when none.",
            metric("fleetops_history_events_dropped_total"),
            by="reason",
            links=runbook_links(Topic.HISTORY, runbooks),
        ),
        _rare_events(
            "History write errors",
            "Failed batch writes per second, by kind. Flat at 0 when none.",
            metric("fleetops_history_write_errors_total"),
            by="kind",
        ),
    ]
