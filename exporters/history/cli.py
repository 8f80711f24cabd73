"""``fleetops recorder`` (run the task-history recorder) and ``fleetops history ...`` (search,
show, failures, prune, migrate, reindex). Heavy imports stay inside the commands; the settings
model is imported here because the options' help shows its defaults."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer

from exporters.history.settings import RECENT_WINDOW, HistorySettings
from fleetops.settings import from_settings, option_help

if TYPE_CHECKING:
    import pandas as pd

history_app = typer.Typer(
    name="history", help="Search and maintain the task history.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.command("recorder")(recorder)
    app.add_typer(history_app, name="history")


def _settings(database_url: str | None) -> HistorySettings:
    from exporters.history.settings import load_settings

    overrides = {"history_database_url": database_url} if database_url else {}
    return load_settings(HistorySettings, **overrides)


def _engine(database_url: str | None, *, migrate_first: bool = True) -> Any:
    from sqlalchemy.exc import SQLAlchemyError

    from exporters.history import migrate
    from exporters.history.database import create_history_engine, describe

    settings = _settings(database_url)
    engine = create_history_engine(settings.effective_history_database_url)
    if migrate_first:
        try:
            migrate.upgrade(engine)
        except SQLAlchemyError as exc:
            reason = getattr(exc, "orig", None) or exc
            where = describe(engine)
            typer.echo(f"fleetops: cannot open the history at {where}: {reason}", err=True)
            raise typer.Exit(1) from exc
    return engine


DATABASE_OPTION = typer.Option(
    None,
    "--database-url",
    help=option_help(HistorySettings, "history_database_url", "History database"),
)


APP_OPTION = typer.Option(None, help="Only this app's tasks (FLEETOPS_APPS); all by default.")


def recorder(
    database_url: str | None = DATABASE_OPTION,
    log_level: str = typer.Option("INFO", help="Logging level."),
) -> None:
    """Record every task and worker from the event stream into the history database."""
    import logging
    import signal

    from exporters.history.recorder import Recorder
    from exporters.stream.collector import take_over_for

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from exporters.serving import listen_or_exit

    settings = _settings(database_url)
    instance = Recorder(settings)
    # This process is the recorder's alone; every app's consumer ticks the one collector.
    take_over_for(source.stream for source in instance.sources)
    server = None
    if settings.history_metrics_port:
        server = listen_or_exit(
            "recorder", settings.history_metrics_host, settings.history_metrics_port,
            instance.metrics.render, instance.health,
        )  # fmt: skip
        server.start()

    def request_stop(signum: int, _frame: object) -> None:
        instance.stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        instance.run()
    finally:
        if server is not None:
            server.stop()
    if instance.failed:
        # A supervisor (or `fleetops up`) must see a failure, not a clean exit.
        raise typer.Exit(1)


def _print_frame(frame: pd.DataFrame, as_json: bool) -> None:
    if as_json:
        typer.echo(frame.to_json(orient="records", date_format="iso", indent=None))
        return
    if frame.empty:
        typer.echo("no tasks match")
        return
    import pandas as pd

    with pd.option_context("display.max_columns", None, "display.width", 200,
                           "display.max_colwidth", 60):  # fmt: skip
        typer.echo(frame.to_string(index=False))


@history_app.command("search")
def search(
    name: str | None = typer.Option(None, help="Task name, exact."),
    state: str | None = typer.Option(None, help="PENDING, RECEIVED, STARTED, SUCCESS, ..."),
    worker: str | None = typer.Option(None, help="Worker node name, exact."),
    queue: str | None = typer.Option(None, help="Queue name, exact."),
    since: str | None = typer.Option(None, help="ISO time or an age such as 15m, 2h, 7d."),
    until: str | None = typer.Option(None, help="ISO time or an age."),
    exception: str | None = typer.Option(None, help="Exception class name, exact."),
    exception_text: str | None = typer.Option(None, help="Text in the exception message."),
    text: str | None = typer.Option(None, "--text", "--args", help="Text in args or kwargs."),
    app: str | None = APP_OPTION,
    limit: int = typer.Option(50, min=1, max=10_000),
    as_json: bool = typer.Option(False, "--json", help="One JSON array, for scripts."),
    database_url: str | None = DATABASE_OPTION,
) -> None:
    """Find tasks, newest first."""
    from exporters.history.queries import TaskFilter, search_tasks

    filters = TaskFilter(
        name=name, state=state, worker=worker, queue=queue, since=since, until=until,
        exception=exception, exception_text=exception_text, text=text,
    )  # fmt: skip
    try:
        frame = search_tasks(_engine(database_url), filters, limit=limit, app=app)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    columns = ["task_id", "app", "name", "state", "worker", "queue", "timestamp", "runtime",
               "exception_type", "args"]  # fmt: skip
    _print_frame(frame if as_json else frame[columns], as_json)


@history_app.command("show")
def show(
    task_id: str = typer.Argument(..., help="The task id."),
    as_json: bool = typer.Option(False, "--json"),
    database_url: str | None = DATABASE_OPTION,
) -> None:
    """Every stored field of one task and its timeline."""
    from exporters.history.queries import task_detail

    detail = task_detail(_engine(database_url), task_id)
    if detail is None:
        typer.echo(f"fleetops: no task {task_id!r} in the history", err=True)
        raise typer.Exit(1)
    if as_json:
        payload = {
            "fields": detail.fields,
            "timeline": [
                {"event": e.event, "at": e.at, "since_previous": e.since_previous}
                for e in detail.timeline
            ],
        }
        typer.echo(json.dumps(payload, default=str))
        return
    for key, value in detail.fields.items():
        if value is not None:
            typer.echo(f"{key:>15}: {value}")
    typer.echo("timeline:")
    for entry in detail.timeline:
        gap = "" if entry.since_previous is None else f"  (+{entry.since_previous:.3f}s)"
        typer.echo(f"  {entry.at.isoformat()}  {entry.event}{gap}")


@history_app.command("failures")
def failures_command(
    since: str = typer.Option(RECENT_WINDOW, help="ISO time or an age."),
    name: str | None = typer.Option(None, help="Only this task name."),
    app: str | None = APP_OPTION,
    as_json: bool = typer.Option(False, "--json"),
    database_url: str | None = DATABASE_OPTION,
) -> None:
    """Failures grouped by app, task and exception, with counts and first/last seen."""
    from exporters.history.queries import failures

    _print_frame(failures(_engine(database_url), since=since, name=name, app=app), as_json)


@history_app.command("prune")
def prune_command(database_url: str | None = DATABASE_OPTION) -> None:
    """Apply retention now (FLEETOPS_HISTORY_RETENTION_DAYS, ..._MAX_ROWS and their failed
    counterparts); the recorder also does it every FLEETOPS_HISTORY_PRUNE_INTERVAL seconds."""
    from exporters.history.retention import RetentionPolicy, prune, row_counts

    settings = _settings(database_url)
    engine = _engine(database_url)
    result = prune(engine, from_settings(RetentionPolicy, settings, "history_"))
    counts = row_counts(engine)
    typer.echo(
        f"removed {result.total} tasks ({result.by_age} by age, {result.by_count} by count)"
        f" and {result.workers} workers; kept {counts['other']} tasks and"
        f" {counts['failed']} failed tasks"
    )


@history_app.command("migrate")
def migrate_command(database_url: str | None = DATABASE_OPTION) -> None:
    """Create or upgrade the history schema (the recorder does this at start too)."""
    from exporters.history import migrate

    engine = _engine(database_url)
    typer.echo(f"history schema at revision {migrate.current_revision(engine)}")


@history_app.command("reindex")
def reindex_command(database_url: str | None = DATABASE_OPTION) -> None:
    """SQLite: rebuild the argument/exception text index (needed after a manual VACUUM)."""
    from exporters.history import text_index

    engine = _engine(database_url)
    if not text_index.present(engine):
        typer.echo("no text index here (PostgreSQL uses pg_trgm; or SQLite lacks trigram)")
        return
    with engine.begin() as connection:
        text_index.rebuild(connection)
    typer.echo("text index rebuilt")
