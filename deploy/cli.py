"""``fleetops deploy generate``: the Compose and Kubernetes files from the one configuration."""

from __future__ import annotations

from pathlib import Path

import typer

deploy_app = typer.Typer(
    help="Deployment files (Docker Compose, Kubernetes) generated from the configuration.",
    no_args_is_help=True,
)


@deploy_app.command()
def generate(
    check: bool = typer.Option(
        False, "--check", help="Write nothing; fail when a committed file differs (for CI)."
    ),
    breaking_points_file: Path = typer.Option(
        None,
        "--breaking-points",
        help="Breaking points file (default: FLEETOPS_BREAKING_POINTS_FILE, else the built-in).",
    ),
) -> None:
    """Write deploy/compose/ and deploy/kubernetes/."""
    from deploy.generate import DEPLOY_DIR, differences, render, write

    files = render(breaking_points_file)
    if check:
        diffs = differences(files)
        if diffs:
            typer.echo("".join(diffs), err=True)
            typer.echo(
                f"fleetops deploy: {len(diffs)} generated file(s) are out of date;"
                " run `fleetops deploy generate` and commit the result.",
                err=True,
            )
            raise typer.Exit(1)
        typer.echo(f"fleetops deploy: {len(files)} files in {DEPLOY_DIR} are up to date")
        return
    for path in write(files):
        typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.add_typer(deploy_app, name="deploy")
