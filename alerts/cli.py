"""``fleetops alerts ...`` (generate and check the rules) and ``fleetops pager``."""

from __future__ import annotations

from pathlib import Path

import typer

from fleetops import ports

alerts_app = typer.Typer(
    help="Alert rules, Alertmanager routing and runbooks generated from the breaking points.",
    no_args_is_help=True,
)


@alerts_app.command()
def generate(
    check: bool = typer.Option(
        False, "--check", help="Write nothing; fail when a committed file differs (for CI)."
    ),
    out_dir: Path = typer.Option(None, help="Where to write (default: the alerts/ package)."),
    breaking_points_file: Path = typer.Option(
        None,
        "--breaking-points",
        help="Breaking points file (default: FLEETOPS_BREAKING_POINTS_FILE, else the built-in).",
    ),
    runbook_url_base: str = typer.Option(None, help="Override [alerts] runbook_url_base."),
    dashboard_url_base: str = typer.Option(None, help="Override [alerts] dashboard_url_base."),
) -> None:
    """Write prometheus_rules.yaml, prometheus_alerts.yaml, alertmanager.yml, prometheus.yml
    and, with the default output directory, the generated block of docs/alerts.md."""
    from alerts import docs
    from alerts.generate import PACKAGE_DIR, differences, load_inputs, write
    from alerts.generate import generate as build

    points, config = load_inputs(breaking_points_file)
    config = config.with_overrides(
        runbook_url_base=runbook_url_base, dashboard_url_base=dashboard_url_base
    )
    generated = build(points, config)
    target = out_dir or PACKAGE_DIR
    # The document describes the committed rules only, not a copy written elsewhere.
    with_docs = out_dir is None and docs.DOCS_FILE.is_file()
    if with_docs:
        current = docs.DOCS_FILE.read_text()
        documented = docs.splice(current, docs.block(points, config, generated.alerts))
    if check:
        diffs = differences(generated, target)
        if with_docs and documented != current:
            diffs.append(f"{docs.DOCS_FILE}: the generated alert tables differ\n")
        if diffs:
            typer.echo("".join(diffs), err=True)
            typer.echo(
                f"fleetops alerts: {len(diffs)} generated file(s) are out of date;"
                " run `fleetops alerts generate` and commit the result.",
                err=True,
            )
            raise typer.Exit(1)
        also = f" and {docs.DOCS_FILE.name}" if with_docs else ""
        typer.echo(
            f"fleetops alerts: {len(generated.files)} files in {target}{also} are up to date."
        )
        return
    for path in write(generated, target):
        typer.echo(f"wrote {path}")
    if with_docs and documented != current:
        docs.DOCS_FILE.write_text(documented)
        typer.echo(f"wrote {docs.DOCS_FILE}")
    typer.echo(f"{len(generated.alerts)} alerting rules.")


@alerts_app.command("list")
def list_alerts() -> None:
    """Every alert with its severity, `for` and expression."""
    from alerts.generate import enabled_alerts, load_inputs

    points, config = load_inputs()
    for rule in enabled_alerts(points, config):
        expr = " ".join(rule.expr.split())
        typer.echo(f"{rule.name:<30} {rule.severity:<9} for {rule.hold:<4} {expr}")


@alerts_app.command("config")
def show_config(
    breaking_points_file: Path = typer.Option(
        None,
        "--breaking-points",
        help="Breaking points file (default: FLEETOPS_BREAKING_POINTS_FILE, else the built-in).",
    ),
) -> None:
    """Every [alerts] setting in force, defaults included, as JSON (the file sets only changes)."""
    from alerts.generate import load_inputs

    _, config = load_inputs(breaking_points_file)
    typer.echo(config.model_dump_json(by_alias=True, indent=2))


def pager(
    host: str = typer.Option(ports.LOOPBACK, help="Address to listen on."),
    port: int = typer.Option(ports.PAGER, help="Port to listen on."),
    log_file: Path = typer.Option(None, help="Also append every page as JSON lines here."),
    runbooks_dir: Path = typer.Option(None, help="Runbooks served at /runbooks/<Alert>.md."),
) -> None:
    """A local pager: receive Alertmanager webhooks and log every page with its runbook link."""
    import logging

    from alerts.pager import DEFAULT_RUNBOOKS_DIR, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        serve(host, port, log_file, runbooks_dir or DEFAULT_RUNBOOKS_DIR)
    except OSError as exc:
        typer.echo(f"fleetops pager: cannot listen on {host}:{port}: {exc}", err=True)
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        pass


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app, name="alerts")
    app.command("pager")(pager)
