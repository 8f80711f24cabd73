"""How the console is started and configured: no servers needed."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from console import auth
from console.cli import register
from console.fleet import processes
from console.settings import ConsoleSettings, load
from fleetops.errors import ConfigError
from fleetops.fleet.spec import FleetContext


def test_the_fleet_passes_every_source_to_the_console(tmp_path: Path) -> None:
    ctx = FleetContext(run_dir=tmp_path, env={})
    ctx.endpoints.update(
        prometheus="http://127.0.0.1:9090",
        alertmanager="http://127.0.0.1:9093",
        history_database="sqlite:////tmp/history.db",
    )
    [spec] = processes(ctx)
    assert spec.env == {
        "FLEETOPS_PROMETHEUS_URL": "http://127.0.0.1:9090",
        "FLEETOPS_ALERTMANAGER_URL": "http://127.0.0.1:9093",
        "FLEETOPS_HISTORY_DATABASE_URL": "sqlite:////tmp/history.db",
    }
    argv = " ".join(spec.argv)
    assert "-m streamlit run" in argv and argv.endswith("--client.toolbarMode viewer")
    assert "--server.headless true" in argv and "--browser.gatherUsageStats false" in argv
    assert spec.url is not None and f"--server.port {spec.url.rsplit(':', 1)[1]}" in argv


def test_a_bad_setting_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETOPS_CONSOLE_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="FLEETOPS_CONSOLE_PORT"):
        load()
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command keeps `console` a subcommand
    result = CliRunner().invoke(app, ["console"])
    assert isinstance(result.exception, ConfigError)


def test_password_login_compares_the_configured_password() -> None:
    settings = ConsoleSettings(console_password="s3cret")
    assert auth.password_matches(settings, "s3cret")
    assert not auth.password_matches(settings, "s3cre")
    assert not auth.password_matches(ConsoleSettings(console_password=None), "")
