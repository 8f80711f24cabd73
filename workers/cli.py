"""CLI commands for the workers: load scenarios, uploads and the dead-letter queue."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from fleetops.urls import redact_url
from workers.fleet import DEFAULT_SCENARIO

dlq = typer.Typer(help="The dead-letter queue: tasks that failed for good.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("load")(load)
    app.command("upload")(upload)
    app.add_typer(dlq, name="dlq")


def load(
    scenario: str = typer.Option(
        DEFAULT_SCENARIO, help="steady | burst | failure-storm | reminders"
    ),
    rate: float = typer.Option(2.0, help="steady: uploads per second."),
    duration: float = typer.Option(None, help="steady: stop after this many seconds."),
    count: int = typer.Option(None, help="burst / failure-storm / reminders: how many."),
    seed: int = typer.Option(0, help="Seed of the generated images."),
) -> None:
    """Drive the fleet with a load scenario."""
    from workers import config
    from workers import load as scenarios
    from workers.client import client_app

    if scenario not in scenarios.SCENARIOS:
        raise typer.BadParameter(f"unknown scenario {scenario!r}; one of {scenarios.SCENARIOS}")
    settings = config.load()
    # A plain client of the broker: the fleet's app would also subscribe to every task's result.
    runner = scenarios.Load(settings, seed=seed, app=client_app(settings.broker_url))
    stopping = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stopping.update(flag=True))
    # Without --count each scenario runs its own default size (workers/load.py).
    sized = {"count": count} if count else {}
    try:
        with _reaching(settings.broker_url):
            if scenario == "steady":
                scenarios.steady(runner, rate, duration, stop=lambda: stopping["flag"])
            elif scenario == "burst":
                scenarios.burst(runner, **sized)
            elif scenario == "failure-storm":
                scenarios.failure_storm(runner, **sized)
            else:
                scenarios.reminders(runner, **sized)
    except KeyboardInterrupt:
        pass
    typer.echo(f"load {scenario}: {runner.report}")


def upload(path: Path = typer.Argument(..., exists=True, dir_okay=False)) -> None:
    """Upload an image and queue its processing; prints the image id."""
    from workers import config
    from workers.client import client_app
    from workers.images.upload import submit_file

    settings = config.load()
    with _reaching(settings.broker_url):
        typer.echo(submit_file(path, settings, app=client_app(settings.broker_url)))


@contextmanager
def _reaching(broker_url: str) -> Iterator[None]:
    """A broker that does not answer is one line naming it, not a traceback."""
    import kombu.exceptions
    import redis.exceptions

    try:
        yield
    except (
        kombu.exceptions.OperationalError,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        ConnectionError,
        TimeoutError,
    ) as exc:
        typer.echo(
            f"fleetops: cannot reach the broker {redact_url(broker_url)}: {exc}"
            " (is the fleet running? `fleetops status` says)",
            err=True,
        )
        raise typer.Exit(1) from exc


def _filters(ids: list[str] | None, name: str | None, exception: str | None):  # type: ignore[no-untyped-def]
    from workers import deadletter

    return deadletter.selector(ids=ids, name=name, exception=exception)


@dlq.command("list")
def dlq_list(
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    limit: int = typer.Option(1000),
) -> None:
    """List dead-lettered tasks without removing them."""
    from workers import deadletter
    from workers.app import app

    with _reaching(app.conf.broker_url):
        letters = deadletter.entries(app, limit=limit)
    for letter in letters:
        if as_json:
            typer.echo(json.dumps(letter.__dict__))
        else:
            typer.echo(
                f"{letter.id}  {letter.failed_at[:19]}  {letter.name}  queue={letter.queue}"
                f"  {letter.exception}: {letter.reason}"
            )
    if not as_json:
        typer.echo(f"{len(letters)} dead-lettered task(s)", err=True)


@dlq.command("requeue")
def dlq_requeue(
    ids: list[str] = typer.Argument(None, help="Entry or task ids; none with --all or a filter."),
    name: str = typer.Option(None, help="Only tasks with this name."),
    exception: str = typer.Option(None, help="Only tasks that failed with this exception."),
    all_: bool = typer.Option(False, "--all", help="Every entry."),
    dry_run: bool = typer.Option(False, help="Show what would be requeued."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
) -> None:
    """Send dead-lettered tasks back to their original queue."""
    _act("requeue", ids, name, exception, all_, dry_run, yes)


@dlq.command("purge")
def dlq_purge(
    ids: list[str] = typer.Argument(None),
    name: str = typer.Option(None),
    exception: str = typer.Option(None),
    all_: bool = typer.Option(False, "--all"),
    dry_run: bool = typer.Option(False),
    yes: bool = typer.Option(False, "--yes"),
) -> None:
    """Delete dead-lettered tasks for good."""
    _act("purge", ids, name, exception, all_, dry_run, yes)


def _act(action: str, ids, name, exception, all_: bool, dry_run: bool, yes: bool) -> None:  # type: ignore[no-untyped-def]
    from workers import deadletter
    from workers.app import app

    if not (ids or name or exception or all_):
        typer.echo("say which entries: ids, --name, --exception or --all", err=True)
        raise typer.Exit(2)
    select = _filters(ids, name, exception)
    if not dry_run and not yes:
        with _reaching(app.conf.broker_url):
            matching = [letter for letter in deadletter.entries(app) if select(letter)]
        if not matching:
            typer.echo("no matching entries")
            return
        if not sys.stdin.isatty() or not typer.confirm(f"{action} {len(matching)} entries?"):
            typer.echo("not confirmed; nothing changed (use --yes to skip the question)", err=True)
            raise typer.Exit(1)
    handler = deadletter.requeue if action == "requeue" else deadletter.purge
    with _reaching(app.conf.broker_url):
        done = handler(app, select, dry_run=dry_run)
    verb = f"would {action}" if dry_run else f"{action}d"
    for letter in done:
        typer.echo(f"{verb} {letter.id} {letter.name} -> {letter.queue}")
    typer.echo(f"{verb} {len(done)} entries", err=True)
