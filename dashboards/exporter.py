"""Exporter health: is the fleetops exporter keeping up with the event stream, and what does
serving /metrics cost."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.builders.dashboard import DashboardLink
from grafana_foundation_sdk.models import dashboard as models

from dashboards import variables
from dashboards.base import BuildOptions, assemble
from dashboards.config import Uid
from dashboards.panels import Query, stat_panel, timeseries_panel, value_thresholds
from dashboards.promql import (
    APP,
    APP_OR_NONE,
    JOB,
    RECORDER_JOB,
    max_by,
    or_zero,
    rate,
    sel,
    sum_by,
)
from dashboards.runbooks import Topic


@dataclass(frozen=True)
class Process:
    """A fleetops process Prometheus scrapes, as the stats opening its row name it."""

    job: str  # the matcher of the job it is scraped under
    name: str  # as the scrape description calls it
    title_prefix: str  # before "scraped" and "stalled parts"; none for the exporter itself
    topic: Topic  # the runbooks of it being down
    parts: str  # what it is and its threads (the `part` label), as the stalled stat lists them
    when_stalled: str  # what a stalled part means to the reader
    stalled_alert: str
    # The app matcher of its own series: every exporter series names its app; the recorder's
    # writer serves every app and its series carry none (promql.sel).
    app: str = APP

    def metric(self, name: str) -> str:
        # `up` is written per scrape target, which serves every app: it never carries one.
        return sel(name, self.job, app=None if name == "up" else self.app)

    def title(self, text: str) -> str:
        return f"{self.title_prefix} {text}".strip().capitalize()


EXPORTER = Process(
    JOB,
    "the exporter",
    "",
    Topic.EXPORTER,
    "exporter (reader, applier, poller)",
    "its metrics are frozen",
    "FleetopsExporterStalled",
)
RECORDER = Process(
    RECORDER_JOB,
    "the history recorder",
    "Recorder",
    Topic.HISTORY,
    "recorder (reader, consumer, writer)",
    "events are not being recorded",
    "FleetopsHistoryRecorderStalled",
    app=APP_OR_NONE,
)


def build(options: BuildOptions) -> models.Dashboard:
    ingest = [
        _scraped(options, EXPORTER),
        _up(
            "Broker",
            "1 while the broker answers the exporter.",
            Query(f"min({sel('fleetops_exporter_broker_up', JOB)})", "broker up"),
            options.runbooks(Topic.BROKER),
        ),
        _stalled(EXPORTER, "fleetops_exporter_stalled"),
        timeseries_panel(
            "Events",
            "Events consumed per second, by event type.",
            "ops",
            [Query(sum_by(["type"], rate(sel("fleetops_exporter_events_total", JOB))), "{{type}}")],
            width=6,
            height=4,
            links=options.runbooks(Topic.EVENTS),
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
            " unknown type...), by reason.",
            sel("fleetops_exporter_events_rejected_total", JOB),
            by="reason",
        ),
        _rare_events(
            "Events dropped",
            "Events lost per second (queue overflow, missed while re-subscribing), by reason.",
            sel("fleetops_exporter_events_dropped_total", JOB),
            by="reason",
        ),
        _rare_events(
            "Broker reconnects",
            "Reconnects to the broker per second.",
            sel("fleetops_exporter_broker_reconnects_total", JOB),
            legend="reconnects",
            when_none=" Flat at 0 when the connection holds.",
        ),
    ]
    serving = [
        timeseries_panel(
            "Scrape duration",
            "Time the exporter took to render /metrics, and the whole scrape as Prometheus saw it.",
            "s",
            [
                Query(f"max({sel('fleetops_exporter_scrape_duration_seconds', JOB)})", "render"),
                Query(
                    f"max({sel('scrape_duration_seconds', JOB, app=None)})",
                    "Prometheus scrape",
                ),
            ],
            width=8,
        ),
        timeseries_panel(
            "Series",
            "Series the exporter holds, and samples Prometheus took in the last scrape.",
            "short",
            [
                Query(f"sum({sel('fleetops_exporter_series', JOB)})", "held"),
                Query(f"sum({sel('scrape_samples_scraped', JOB, app=None)})", "scraped"),
            ],
            width=8,
        ),
        _rare_events(
            "Series refused",
            "Series per second refused because the series cap was reached.",
            sel("fleetops_exporter_series_limit_hits_total", JOB),
            legend="refused",
        ),
    ]
    return assemble(
        Uid.EXPORTER,
        "Exporter health",
        "The fleetops exporter and task-history recorder themselves: events in, errors, lag,"
        " scrape cost, series count, and whether the history is being written.",
        [variables.exporter_job(), variables.recorder_job()],
        [("Ingest", ingest), ("Serving", serving), ("History recorder", _recorder(options))],
    )


def _rare_events(
    title: str,
    description: str,
    counter: str,
    *,
    by: str | None = None,
    legend: str | None = None,
    links: Sequence[DashboardLink] = (),
    when_none: str = " Flat at 0 when none.",
) -> timeseries.Panel:
    """Per-second rate of a counter of rare trouble, flat at 0 (not "No data") when none, and
    the description ends by saying so."""
    return timeseries_panel(
        title,
        description + when_none,
        "ops",
        [Query(or_zero(sum_by([by] if by else [], rate(counter))), legend or f"{{{{{by}}}}}")],
        width=8,
        links=links,
    )


def _up(title: str, description: str, query: Query, links: list[DashboardLink]) -> stat.Panel:
    """A 1-is-up stat of one pipeline part, linking the runbooks of its alerts."""
    return stat_panel(title, description, query, width=4, height=4, links=links)


def _scraped(options: BuildOptions, process: Process) -> stat.Panel:
    return _up(
        process.title("scraped"),
        f"1 while Prometheus scrapes {process.name} (the `up` series of its job).",
        Query(f"min({process.metric('up')})", "up"),
        options.runbooks(process.topic),
    )


def _stalled(process: Process, gauge: str) -> stat.Panel:
    """Per part, 1 while it is stalled: green at 0, red from 1."""
    return stat_panel(
        process.title("stalled parts"),
        f"1 for a part of the {process.parts} whose thread has died or made no progress for"
        f" 45 s, while the process still answers: {process.when_stalled}."
        f" {process.stalled_alert} pages after 1 minute of it.",
        Query(max_by(["part"], process.metric(gauge)), "{{part}}"),
        width=4,
        height=4,
        thresholds=value_thresholds((1, "red")),
    )


def _recorder(options: BuildOptions) -> list:
    metric = RECORDER.metric
    history = options.runbooks(Topic.HISTORY)
    return [
        _scraped(options, RECORDER),
        _up(
            "History database",
            "1 while the recorder's last write to the history database succeeded.",
            Query(f"min({metric('fleetops_history_database_up')})", "database up"),
            history,
        ),
        _stalled(RECORDER, "fleetops_history_stalled"),
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
            [Query(sum_by(["where"], metric("fleetops_history_buffered_events")), "{{where}}")],
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
            " reason.",
            metric("fleetops_history_events_dropped_total"),
            by="reason",
            links=history,
        ),
        _rare_events(
            "History write errors",
            "Failed batch writes per second, by kind.",
            metric("fleetops_history_write_errors_total"),
            by="kind",
        ),
    ]
