"""The recorder's and ``fleetops history``'s --database-url help states what HistorySettings
falls back to, so the help cannot drift from the settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.core import TyperGroup

from exporters.history import cli as history_cli
from exporters.history.settings import HistorySettings
from tests.exporter.test_cli_defaults import app_of, command, stated_defaults


def test_every_database_url_option_shows_the_settings_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLEETOPS_HISTORY_DATABASE_URL", raising=False)
    app = app_of(history_cli.register)
    history = typer.main.get_command(app).commands["history"]  # type: ignore[attr-defined]
    assert isinstance(history, TyperGroup)
    commands = [command(app, "recorder"), *history.commands.values()]
    assert len(commands) > 5
    # The default is None: the help says what that means, which must be what it does.
    assert HistorySettings.model_fields["history_database_url"].default is None
    fallback = HistorySettings(data_dir=tmp_path).effective_history_database_url
    for cmd in commands:
        stated = stated_defaults(cmd, HistorySettings)  # type: ignore[arg-type]
        assert stated.keys() == {"database_url"}, cmd.name
        field, shown = stated["database_url"]
        assert field == "history_database_url"
        assert (shown or "").replace("<data_dir>", str(tmp_path)) == fallback, cmd.name
