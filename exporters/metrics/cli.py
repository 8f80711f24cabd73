"""``fleetops exporter``: serve the fleet's metrics for Prometheus."""

from __future__ import annotations

from typing import Any

import typer

from exporters.metrics.settings import ExporterSettings
from fleetops.settings import description, option_help


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


def _option(field: str, how: str = "") -> Any:
    # Unset by default: load() then takes the environment or ExporterSettings' default. The
    # help is the setting's description and default, written once in the settings model;
    # ``how`` adds what only the command line needs saying.
    text = description(ExporterSettings, field) + (f"; {how}" if how else "")
    return typer.Option(None, help=option_help(ExporterSettings, field, text))


def register(app: typer.Typer) -> None:
    @app.command()
    def exporter(
        broker_url: str = _option("broker_url"),
        app_name: str = _option("app_name"),
        apps: str = _option("apps", "when given, --broker-url and --app-name are not used"),
        host: str = _option("exporter_host"),
        port: int = _option("exporter_port"),
        replica: str = _option("exporter_replica"),
        metric_prefix: str = _option("exporter_metric_prefix"),
        static_label: list[str] = _option("exporter_static_labels", "repeat for several"),
        buckets: str = _option("exporter_buckets", "comma separated"),
        worker_timeout: float = _option("exporter_worker_timeout"),
        purge_offline_after: float = _option("exporter_purge_offline_after"),
        max_series: int = _option("exporter_max_series"),
        max_tasks: int = _option("exporter_max_tasks"),
        poll_interval: float = _option("exporter_poll_interval"),
        reorder_window: float = _option("exporter_reorder_window"),
        queue: list[str] = _option("exporter_queues", "repeat for several"),
        event_reader: str = _option("exporter_event_reader"),
        visibility_timeout: float = _option("exporter_visibility_timeout"),
        stuck_after: float = _option("exporter_stuck_after"),
        log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING or ERROR."),
    ) -> None:
        """Serve the fleet's metrics for Prometheus: /metrics and /healthz."""
        import logging
        import signal
        import threading

        from exporters.metrics.apps import Exporters
        from exporters.metrics.settings import load
        from exporters.serving import listen_or_exit
        from fleetops.urls import redact_url

        logging.basicConfig(
            level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        settings = load(
            broker_url=broker_url,
            app_name=app_name,
            apps=apps,
            exporter_host=host,
            exporter_port=port,
            exporter_replica=replica,
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
            exporter_visibility_timeout=visibility_timeout,
            exporter_stuck_after=stuck_after,
        )
        service = Exporters(settings)
        apps_followed = settings.effective_apps
        service.take_over_collector()  # this process is the exporter's alone
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
            "replica %s serving http://%s:%d/metrics for %s",
            settings.exporter_replica,
            settings.exporter_host,
            server.port,
            # Logs travel further than secrets: URLs without their passwords.
            ", ".join(f"{redact_url(app.broker_url)} (app {app.name})" for app in apps_followed),
        )
        done.wait()
        server.stop()
        service.stop()
