"""``fleetops exporter``: serve the fleet's metrics for Prometheus."""

from __future__ import annotations

import typer

from exporters.metrics.settings import ExporterSettings
from fleetops.settings import option_help


def _static_labels(values: list[str] | None) -> dict[str, str] | None:
    if not values:
        return None
    labels: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r}: expected key=value", param_hint="--static-label")
        labels[key.strip()] = value
    return labels


def _buckets(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise typer.BadParameter(
            f"{text!r}: expected seconds separated by commas, e.g. 0.1,1,10,60",
            param_hint="--buckets",
        ) from exc


def _help(field: str, text: str) -> str:
    # The default shown is ExporterSettings' own: written once, in the settings model.
    return option_help(ExporterSettings, field, text)


def register(app: typer.Typer) -> None:
    @app.command()
    def exporter(
        broker_url: str = typer.Option(
            None, help=_help("broker_url", "Broker to read events from and poll")
        ),
        host: str = typer.Option(
            None,
            help=_help(
                "exporter_host",
                "Address to listen on; 0.0.0.0 lets Prometheus on other hosts scrape",
            ),
        ),
        port: int = typer.Option(None, help=_help("exporter_port", "Port to listen on")),
        metric_prefix: str = typer.Option(
            None, help=_help("exporter_metric_prefix", "Prefix of the peer-compatible metrics")
        ),
        static_label: list[str] = typer.Option(
            None,
            help=_help(
                "exporter_static_labels", "key=value added to every series; repeat for several"
            ),
        ),
        buckets: str = typer.Option(
            None,
            help=_help(
                "exporter_buckets",
                "Histogram bucket bounds in seconds, comma separated; the task-latency breaking"
                " points are always added",
            ),
        ),
        worker_timeout: float = typer.Option(
            None,
            help=_help(
                "exporter_worker_timeout", "Seconds without a heartbeat before a worker is down"
            ),
        ),
        purge_offline_after: float = typer.Option(
            None,
            help=_help(
                "exporter_purge_offline_after",
                "Seconds after which a silent worker's series are dropped; 0 keeps them",
            ),
        ),
        max_series: int = typer.Option(
            None, help=_help("exporter_max_series", "Cap on series held")
        ),
        max_tasks: int = typer.Option(
            None,
            help=_help("exporter_max_tasks", "Cap on tasks in flight remembered for latencies"),
        ),
        poll_interval: float = typer.Option(
            None, help=_help("exporter_poll_interval", "Seconds between broker queue polls")
        ),
        reorder_window: float = typer.Option(
            None,
            help=_help(
                "exporter_reorder_window",
                "Seconds a task's events wait for its late task-sent; 0 turns the wait off",
            ),
        ),
        queue: list[str] = typer.Option(
            None,
            help=_help(
                "exporter_queues", "Queue to report even before it is seen; repeat for several"
            ),
        ),
        event_reader: str = typer.Option(
            None,
            help=_help(
                "exporter_event_reader",
                "auto (direct Redis when the broker is Redis), redis or kombu",
            ),
        ),
        log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING or ERROR."),
    ) -> None:
        """Serve the fleet's metrics for Prometheus: /metrics and /healthz."""
        import logging
        import signal
        import threading

        from exporters.metrics.app import Exporter
        from exporters.metrics.settings import load
        from exporters.serving import listen_or_exit
        from fleetops.urls import redact_url

        logging.basicConfig(
            level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        settings = load(
            broker_url=broker_url,
            exporter_host=host,
            exporter_port=port,
            exporter_metric_prefix=metric_prefix,
            exporter_static_labels=_static_labels(static_label),
            exporter_buckets=_buckets(buckets),
            exporter_worker_timeout=worker_timeout,
            exporter_purge_offline_after=purge_offline_after,
            exporter_max_series=max_series,
            exporter_max_tasks=max_tasks,
            exporter_poll_interval=poll_interval,
            exporter_reorder_window=reorder_window,
            exporter_queues=queue or None,
            exporter_event_reader=event_reader,
        )
        service = Exporter(settings)
        server = listen_or_exit(
            "exporter", settings.exporter_host, settings.exporter_port, service.render,
            service.health,
        )  # fmt: skip
        done = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: done.set())
        signal.signal(signal.SIGINT, lambda *_: done.set())
        service.start()
        server.start()
        logging.getLogger("exporters.metrics").info(
            "serving http://%s:%d/metrics for %s",
            settings.exporter_host,
            server.port,
            redact_url(settings.broker_url),  # logs travel further than secrets
        )
        done.wait()
        server.stop()
        service.stop()
