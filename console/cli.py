"""``fleetops console``: run the Streamlit console."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

APP = Path(__file__).resolve().with_name("app.py")


def streamlit_argv(host: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.headless", "true",
        "--server.address", host,
        "--server.port", str(port),
        "--browser.gatherUsageStats", "false",
        # Operators see the console, not Streamlit's deploy and developer menu.
        "--client.toolbarMode", "viewer",
    ]  # fmt: skip


def register(app: typer.Typer) -> None:
    @app.command()
    def console(
        host: str = typer.Option(None, help="Address to listen on [FLEETOPS_CONSOLE_HOST]."),
        port: int = typer.Option(None, help="Port to listen on [FLEETOPS_CONSOLE_PORT]."),
    ) -> None:
        """Run the ops console (Streamlit): the fleet against its breaking points."""
        from console.settings import load

        settings = load()  # a bad variable stops here with its name, not inside a page
        argv = streamlit_argv(host or settings.console_host, port or settings.console_port)
        raise typer.Exit(subprocess.call(argv, env=dict(os.environ)))
