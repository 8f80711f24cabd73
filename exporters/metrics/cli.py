"""``fleetops exporter``: serve the fleet's metrics for Prometheus."""

from __future__ import annotations

import typer


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


def register(app: typer.Typer) -> None:
    @app.command()
    def exporter(
        broker_url: str = typer.Option(
            None, help="Broker to read events from and poll (default: $FLEETOPS_BROKER_URL)."
        ),
        host: str = typer.Option(
            None,
            help="Address to listen on; 0.0.0.0 lets Prometheus on other hosts scrape"
            " (default: $FLEETOPS_EXPORTER_HOST or 127.0.0.1).",
        ),
        port: int = typer.Option(None, help="Port to listen on (default: 9808)."),
        metric_prefix: str = typer.Option(
            None, help="Prefix of the peer-compatible metrics (default: celery_)."
        ),
        static_label: list[str] = typer.Option(
            None, help="key=value added to every series; repeat for several."
        ),
        buckets: str = typer.Option(
            None,
            help="Histogram bucket bounds in seconds, comma separated; the task-latency breaking"
            " points are always added.",
        ),
        worker_timeout: float = typer.Option(
            None, help="Seconds without a heartbeat before a worker is down (default: 30)."
        ),
        purge_offline_after: float = typer.Option(
            None, help="Seconds after which a silent worker's series are dropped (default: 600)."
        ),
        max_series: int = typer.Option(None, help="Cap on series held (default: 200000)."),
        max_tasks: int = typer.Option(
            None, help="Cap on tasks in flight remembered for latencies (default: 200000)."
        ),
        poll_interval: float = typer.Option(
            None, help="Seconds between broker queue polls (default: 5)."
        ),
        reorder_window: float = typer.Option(
            None, help="Seconds a task's events wait for its late task-sent (default: 2; 0: off)."
        ),
        queue: list[str] = typer.Option(
            None, help="Queue to report even before it is seen; repeat for several."
        ),
        event_reader: str = typer.Option(
            None, help="auto (direct Redis when the broker is Redis), redis or kombu."
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
