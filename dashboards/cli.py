"""``fleetops dashboards build | provision``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from dashboards.config import (
    DATASOURCE_NAME,
    DATASOURCE_UID,
    DEFAULT_PROMETHEUS_URL,
    FOLDER_TITLE,
    FOLDER_UID,
)

if TYPE_CHECKING:  # the CLI imports the SDK only when a command runs
    from dashboards.base import BuildOptions

group = typer.Typer(
    name="dashboards",
    help="Grafana dashboards as code: build the JSON, provision Grafana.",
    no_args_is_help=True,
)

RUNBOOK_OPTION = typer.Option(
    None,
    help="Base URL of the runbooks that panels link (<base>/<AlertName>.md); default: the"
    " alerts' runbook_url_base.",
)


@group.command()
def build(
    output: Path = typer.Option(
        None, help="Directory for the JSON (default: dashboards/generated)."
    ),
    check: bool = typer.Option(
        False, "--check", help="Write nothing; fail if the committed JSON differs from the build."
    ),
    runbook_base_url: str | None = RUNBOOK_OPTION,
) -> None:
    """Build every dashboard and write its JSON (or, with --check, compare it)."""
    from dashboards.build import GENERATED_DIR, compare, write

    directory = output or GENERATED_DIR
    options = _options(runbook_base_url)
    if check:
        differences = compare(directory, options)
        for difference in differences:
            typer.echo(difference.diff, err=True)
        if differences:
            typer.echo(
                f"fleetops dashboards: {len(differences)} file(s) differ from the build;"
                " run `fleetops dashboards build` and commit the result.",
                err=True,
            )
            raise typer.Exit(1)
        typer.echo(f"fleetops dashboards: {directory} is up to date.")
        return
    for path in write(directory, options):
        typer.echo(f"wrote {path}")


@group.command()
def provision(
    grafana_url: str = typer.Option(..., help="Grafana base URL, e.g. http://grafana:3000."),
    token: str = typer.Option(
        None, envvar="FLEETOPS_GRAFANA_TOKEN", help="Service account token (or use --user)."
    ),
    user: str = typer.Option(None, envvar="FLEETOPS_GRAFANA_USER", help="Basic auth user."),
    password: str = typer.Option(
        None, envvar="FLEETOPS_GRAFANA_PASSWORD", help="Basic auth password."
    ),
    prometheus_url: str = typer.Option(
        DEFAULT_PROMETHEUS_URL, help="URL Grafana uses to reach Prometheus."
    ),
    scrape_interval: str = typer.Option(
        "15s", help="Prometheus' scrape interval; Grafana derives $__rate_interval from it."
    ),
    folder_uid: str = typer.Option(FOLDER_UID, help="Folder uid to create or update."),
    folder_title: str = typer.Option(FOLDER_TITLE, help="Folder title."),
    datasource_uid: str = typer.Option(DATASOURCE_UID, help="Prometheus data source uid."),
    datasource_name: str = typer.Option(DATASOURCE_NAME, help="Prometheus data source name."),
    timeout: float = typer.Option(10.0, help="Seconds to wait for each Grafana request."),
    runbook_base_url: str | None = RUNBOOK_OPTION,
) -> None:
    """Create or update the folder, the Prometheus data source and every dashboard."""
    from dashboards.build import build_all
    from dashboards.provision import (
        Provisioner,
        ProvisionError,
        ProvisionTarget,
        credential_from,
    )

    try:
        credential = credential_from(token=token, user=user, password=password)
        target = ProvisionTarget(
            folder_uid=folder_uid,
            folder_title=folder_title,
            datasource_uid=datasource_uid,
            datasource_name=datasource_name,
            prometheus_url=prometheus_url,
            scrape_interval=scrape_interval,
        )
        provisioner = Provisioner.connect(grafana_url, credential, timeout=timeout)
        dashboards = build_all(_options(runbook_base_url))
        for outcome in provisioner.provision(target, list(dashboards.values())):
            typer.echo(f"{outcome.action:<10} {outcome.kind:<11} {outcome.name}")
    except ProvisionError as exc:
        typer.echo(f"fleetops dashboards: {exc}", err=True)
        raise typer.Exit(1) from exc


def _options(runbook_base_url: str | None) -> BuildOptions:
    from dashboards.base import BuildOptions

    return BuildOptions(runbook_base_url) if runbook_base_url else BuildOptions()


def register(app: typer.Typer) -> None:
    app.add_typer(group)
