"""The one CLI: ``fleetops <subcommand>``, one subcommand per process of the fleet.

Each component registers its own commands (``<package>.cli:register``); heavy imports (Celery,
SQLAlchemy, pandas) stay inside the command bodies so ``fleetops --help`` answers at once. The
settings models are the exception: their defaults are what the options' help shows.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from fleetops.errors import ConfigError
from fleetops.fleet import manifest
from fleetops.plugins import hooks, optional_hook
from fleetops.settings import ENV_PREFIX, FleetSettings, field_default
from fleetops.urls import redact_url

if TYPE_CHECKING:
    from fleetops.fleet.runner import FleetRunner, Running

app = typer.Typer(
    name="fleetops",
    help="Operate a Celery fleet: workers, exporter, alerts, dashboards and console.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# A run's logs and state go to RUNS_DIR/<timestamp> unless --run-dir says otherwise.
RUNS_DIR = Path("runs")
# The workers own their load scenarios and which one runs by default; without the workers
# installed there is nothing to load.
DEFAULT_LOAD = optional_hook("workers.fleet:DEFAULT_SCENARIO") or "none"

# Commands that take no settings from a running fleet: `up` starts a fleet of its own (a second
# one must not share the first one's broker), `docs` documents the models' own defaults and
# `status` reports on the fleet rather than using it.
OWN_SETTINGS = {"up", "docs", "status", "deploy"}
BROKER_ENV = ENV_PREFIX + "BROKER_URL"
# `fleetops status` exit codes (2 is a configuration error, as for every command).
STATUS_NO_FLEET = 1
STATUS_PART_DOWN = 3

REGISTRARS = [
    "workers.cli:register",
    "exporters.cli:register",
    "alerts.cli:register",
    "dashboards.cli:register",
    "console.cli:register",
    "deploy.cli:register",
]


@app.callback()
def use_running_fleet(
    ctx: typer.Context,
    fleet: str = typer.Option(
        None,
        "--fleet",
        envvar=manifest.FLEET_ENV,
        metavar="RUN_DIR|none",
        help="The fleet whose addresses are the defaults: a run directory, its fleet.json, or"
        " 'none'. Default: the running fleet that runs/current points at, here or above.",
    ),
) -> None:
    # Found once, before any command reads a setting: the fleet's shared addresses become the
    # defaults of the FLEETOPS_* variables in this process, so every settings model, the Celery
    # app and the processes a command starts (the console's Streamlit) see the same fleet.
    ctx.obj = fleet
    if ctx.invoked_subcommand in OWN_SETTINGS:
        return
    found = manifest.apply(manifest.find(Path.cwd(), fleet), os.environ)
    if found.note:
        typer.echo(f"fleetops: {found.note}", err=True)
    elif found.path is None and not fleet and BROKER_ENV not in os.environ:
        # Quietly falling back to the defaults sent a whole load to another Redis once.
        typer.echo(
            f"fleetops: no running fleet (no runs/{manifest.POINTER} in {Path.cwd()} or above)"
            f" and no {BROKER_ENV}: using {field_default(FleetSettings, 'broker_url')}",
            err=True,
        )
    for name, value in found.overridden.items():
        typer.echo(
            f"fleetops: {name} is set, so it is used rather than the running fleet's"
            f" {redact_url(value)}",
            err=True,
        )


@app.command()
def status(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="One JSON document."),
) -> None:
    """Where the running fleet's parts are and whether each is up (exit 1: no fleet runs,
    3: a part is down)."""
    from fleetops.fleet import status as report

    found = manifest.find(Path.cwd(), ctx.obj)
    if found.manifest is None or found.path is None:
        if found.note:
            reason = found.note
        elif found.path is None and ctx.obj:
            reason = f"told to use none ({manifest.FLEET_ENV} / --fleet)"
        else:
            reason = f"no runs/{manifest.POINTER} in {Path.cwd()} or above"
        typer.echo(f"fleetops status: no fleet is running: {reason}", err=True)
        if as_json:
            typer.echo(json.dumps({"running": False, "reason": reason}))
        raise typer.Exit(STATUS_NO_FLEET)
    render = report.as_json if as_json else report.render
    text, all_up = render(found.manifest, found.path)
    typer.echo(text)
    if not all_up:
        raise typer.Exit(STATUS_PART_DOWN)


@app.command()
def up(
    run_dir: Path = typer.Option(
        None, help=f"Where logs and state of this run go (default: {RUNS_DIR}/<timestamp>)."
    ),
    load: str = typer.Option(DEFAULT_LOAD, help="Load scenario to run, or 'none'."),
    stop_after: float = typer.Option(None, help="Stop by itself after this many seconds."),
    any_port: bool = typer.Option(
        False,
        hidden=True,
        help="Any free ports, not the preferred ones: for tests, which share the machine with"
        " fleets that may be taking the preferred ports right now.",
    ),
) -> None:
    """Run the whole fleet locally, every process of the data flow, until Ctrl-C."""
    from fleetops.fleet.components import assemble
    from fleetops.fleet.runner import FleetError, FleetRunner
    from fleetops.fleet.spec import FleetContext

    run_dir = (run_dir or RUNS_DIR / datetime.now().strftime("%Y%m%d-%H%M%S")).resolve()
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
    # The local fleet is one app on its own broker: a FLEETOPS_APPS exported for another
    # deployment would turn its exporter and recorder to those brokers.
    env.pop(f"{ENV_PREFIX}APPS", None)
    env.setdefault(f"{ENV_PREFIX}DATA_DIR", str(run_dir / "data"))
    # Not a setting: how `up` tells workers/fleet.py which load process to add.
    env[f"{ENV_PREFIX}LOAD_SCENARIO"] = load
    # The fleet's processes get every address from here; none may take another's from a
    # runs/current (a fleet started earlier from this directory, or this one's own).
    env[manifest.FLEET_ENV] = manifest.NO_FLEET
    ctx = FleetContext(run_dir=run_dir, env=env, any_port=any_port)
    runner = FleetRunner(run_dir, say=typer.echo)  # echo flushes: restart lines show at once
    runs_dir = RUNS_DIR.resolve()
    try:
        manifest.pin_addresses(env)
        specs = assemble(ctx)
        # Every address is known once the fleet is assembled: commands find it from now on,
        # and `fleetops status` shows each part coming up.
        manifest.write(run_dir, manifest.of_fleet(run_dir, ctx.env, specs, given=os.environ))
        replaced = manifest.running_elsewhere(runs_dir, run_dir)
        manifest.point_at(runs_dir, run_dir)
        if replaced:
            typer.echo(
                f"fleetops: runs/{manifest.POINTER} pointed at the fleet still running in"
                f" {replaced}; commands run here now use this one",
                err=True,
            )
        typer.echo(f"fleetops: starting {len(specs)} processes; logs in {run_dir}")
        # Side by side, so that a slow starter does not hold up the others; only what the
        # others connect to at start (the broker) is waited for first.
        waiting = []
        for spec in specs:
            running = runner.launch(spec, ctx.child_env())
            if spec.others_wait:
                _ready(runner, running)
            else:
                waiting.append(running)
        for running in waiting:
            _ready(runner, running)
        typer.echo(
            "fleetops: the fleet is running; a process that exits is restarted;"
            " Ctrl-C stops every process."
        )
        # Returns on Ctrl-C, SIGTERM or --stop-after only: exits are restarted, not raised.
        runner.watch(stop_after=stop_after)
    except (FleetError, ConfigError, OSError) as exc:
        typer.echo(f"fleetops: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        runner.stop()
        manifest.unpoint(runs_dir, run_dir)
        typer.echo("fleetops: stopped every process.")


def _ready(runner: FleetRunner, running: Running) -> None:
    runner.wait_ready(running)
    where = f"  {running.spec.url}" if running.spec.url else ""
    typer.echo(f"  ready  {running.spec.name:<16}{where}")


@app.command()
def docs(
    check: bool = typer.Option(False, help="Only check that the docs are up to date."),
) -> None:
    """Regenerate the settings tables in docs/ from the settings models."""
    from fleetops.settings_docs import DOCS_DIR, regenerate

    try:
        stale = regenerate(check=check)
    except ValueError as exc:  # a marker naming no model, a field without a description
        typer.echo(f"fleetops docs: {exc}", err=True)
        raise typer.Exit(2) from exc
    names = ", ".join(path.name for path in stale)
    if check and stale:
        typer.echo(
            f"fleetops docs: stale settings tables in {names}; run `fleetops docs`", err=True
        )
        raise typer.Exit(1)
    typer.echo(
        f"fleetops docs: rewrote {names}" if stale else f"fleetops docs: {DOCS_DIR} is up to date."
    )


def _register_components() -> None:
    for register in hooks(REGISTRARS):
        register(app)


def main() -> None:
    _register_components()
    try:
        app()
    except ConfigError as exc:
        typer.echo(f"fleetops: {exc}", err=True)
        sys.exit(2)
