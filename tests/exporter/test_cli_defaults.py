"""Every default is written once, in the settings model: the CLI help shows the model's value
and names the variable of the setting its option really sets."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import typer
from pydantic_settings import BaseSettings
from typer.core import TyperCommand, TyperGroup, TyperOption
from typer.testing import CliRunner

from exporters.metrics import cli as metrics_cli
from exporters.metrics import settings as metrics_settings
from exporters.metrics.settings import ExporterSettings
from exporters.metrics.state import Limits

# What fleetops.settings.option_help appends: "(default: $VARIABLE or value)."
STATED = re.compile(r"\(default: \$(?P<env>[A-Z0-9_]+)(?: or (?P<shown>.+?))?\)\.$")


def app_of(register: Callable[[typer.Typer], None]) -> typer.Typer:
    app = typer.Typer(add_completion=False)
    register(app)
    return app


def command(app: typer.Typer, name: str) -> TyperCommand:
    # typer builds click commands from its own copy of click (typer._click), not click's.
    built = typer.main.get_command(app)
    found = built.commands[name] if isinstance(built, TyperGroup) else built
    assert isinstance(found, TyperCommand) and found.name == name
    return found


def options(cmd: TyperCommand) -> list[TyperOption]:
    found = [param for param in cmd.params if isinstance(param, TyperOption)]
    assert found, f"{cmd.name} has no options: the test would check nothing"
    return found


def stated_defaults(
    cmd: TyperCommand, model: type[BaseSettings]
) -> dict[str, tuple[str, str | None]]:
    """Option name -> (settings field, default as shown) for each option whose help states one."""
    prefix = str(model.model_config.get("env_prefix", "")).upper()
    stated: dict[str, tuple[str, str | None]] = {}
    for option in options(cmd):
        match = STATED.search(" ".join((option.help or "").split()))
        if match and option.name:
            stated[option.name] = (match["env"].removeprefix(prefix).lower(), match["shown"])
    return stated


def read_back(shown: str | None, default: object) -> object:
    """The default an operator reads in the help, as the type of the model's default: parsed
    here on its own, not by the formatter under test."""
    if isinstance(default, list | dict) and shown == "none":
        return type(default)()
    if isinstance(default, list):
        return [float(part) for part in (shown or "").split(",")]
    if isinstance(default, int | float):
        return type(default)(shown or "")
    return shown


def model_default(model: type[BaseSettings], field: str) -> object:
    return model.model_fields[field].get_default(call_default_factory=True)


def test_the_exporter_help_shows_each_setting_default_as_the_model_has_it() -> None:
    cmd = command(app_of(metrics_cli.register), "exporter")
    stated = stated_defaults(cmd, ExporterSettings)
    # A new option must say its default too (--log-level is no setting: typer shows it).
    assert set(stated) == {option.name for option in options(cmd)} - {"log_level"}
    for option, (field, shown) in stated.items():
        extra = ExporterSettings.model_fields[field].json_schema_extra
        if isinstance(extra, dict) and "shown_as" in extra:
            # A default that depends on where it runs (the replica's host name) is shown as
            # the model says, so that generated docs do not change from host to host.
            assert shown == extra["shown_as"], (option, shown)
            continue
        default = model_default(ExporterSettings, field)
        assert read_back(shown, default) == default, (option, shown, default)


class Loaded(Exception):
    """Stops the command where it hands its options to the settings."""


def test_each_exporter_option_sets_the_setting_its_help_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    given: list[dict[str, object]] = []

    def load(**overrides: object) -> ExporterSettings:
        given.append({key: value for key, value in overrides.items() if value is not None})
        raise Loaded

    monkeypatch.setattr(metrics_settings, "load", load)
    app = app_of(metrics_cli.register)
    cmd = command(app, "exporter")
    stated = stated_defaults(cmd, ExporterSettings)
    assert len(stated) > 10
    for option in options(cmd):
        if option.name not in stated:
            continue
        value = "a=b" if option.name == "static_label" else "7"
        result = CliRunner().invoke(app, [option.opts[0], value])
        assert isinstance(result.exception, Loaded), result.output
        assert set(given[-1]) == {stated[option.name][0]}, option.opts[0]


def test_limits_default_to_the_settings_defaults() -> None:
    limits = Limits()
    for name in ("max_series", "max_tasks", "worker_timeout", "purge_offline_after",
                 "reorder_window", "max_queues", "max_task_names", "max_hostnames",
                 "max_exceptions", "visibility_timeout", "stuck_after",
                 "stuck_bounds"):  # fmt: skip
        assert getattr(limits, name) == model_default(ExporterSettings, f"exporter_{name}")
