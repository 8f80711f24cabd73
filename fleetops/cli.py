"""The one CLI: ``fleetops <subcommand>``, one subcommand per process of the fleet.

Each component registers its own commands (``<package>.cli:register``); heavy imports (Celery,
SQLAlchemy, pandas) stay inside the command bodies so ``fleetops --help`` answers at once. The
settings models are the exception: their defaults are what the options' help shows.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import typer

from fleetops.errors import ConfigError
from fleetops.plugins import hooks, optional_hook
from fleetops.settings import ENV_PREFIX

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

REGISTRARS = [
    "workers.cli:register",
    "exporters.cli:register",
    "alerts.cli:register",
    "dashboards.cli:register",
    "console.cli:register",
]


@app.command()
def up(
    run_dir: Path = typer.Option(
        None, help=f"Where logs and state of this run go (default: {RUNS_DIR}/<timestamp>)."
    ),
    load: str = typer.Option(DEFAULT_LOAD, help="Load scenario to run, or 'none'."),
    stop_after: float = typer.Option(None, help="Stop by itself after this many seconds."),
) -> None:
    """Run the whole fleet locally, every process of the data flow, until Ctrl-C."""
    import os

    from fleetops.fleet.components import assemble
    from fleetops.fleet.runner import FleetError, FleetRunner
    from fleetops.fleet.spec import FleetContext

    run_dir = (run_dir or RUNS_DIR / datetime.now().strftime("%Y%m%d-%H%M%S")).resolve()
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
    env.setdefault(f"{ENV_PREFIX}DATA_DIR", str(run_dir / "data"))
    # Not a setting: how `up` tells workers/fleet.py which load process to add.
    env[f"{ENV_PREFIX}LOAD_SCENARIO"] = load
    ctx = FleetContext(run_dir=run_dir, env=env)
    runner = FleetRunner(run_dir, say=typer.echo)  # echo flushes: restart lines show at once
    try:
        specs = assemble(ctx)
        typer.echo(f"fleetops: starting {len(specs)} processes; logs in {run_dir}")
        for spec in specs:
            runner.start(spec, ctx.child_env())
            where = f"  {spec.url}" if spec.url else ""
            typer.echo(f"  ready  {spec.name:<16}{where}")
        typer.echo(
            "fleetops: the fleet is running; a process that exits is restarted;"
            " Ctrl-C stops every process."
        )
        # Returns on Ctrl-C, SIGTERM or --stop-after only: exits are restarted, not raised.
        runner.watch(stop_after=stop_after)
    except (FleetError, ConfigError, FileNotFoundError) as exc:
        typer.echo(f"fleetops: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        runner.stop()
        typer.echo("fleetops: stopped every process.")


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
