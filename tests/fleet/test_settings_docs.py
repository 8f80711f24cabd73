"""The settings tables in docs/ are generated from the settings models, and up to date: a
default or a description is written once, in its model."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from pydantic import Field
from typer.testing import CliRunner

from fleetops import settings_docs
from fleetops.cli import app
from fleetops.settings import FleetSettings

# Every module that defines a settings model of the fleet.
SETTINGS_MODULES = [
    "fleetops.settings",
    "exporters.metrics.settings",
    "exporters.history.settings",
    "console.settings",
    "workers.config",
    "alerts.fleet",
]


def test_the_docs_are_what_the_models_generate() -> None:
    result = CliRunner().invoke(app, ["docs", "--check"])
    assert result.exit_code == 0, result.output


def test_every_settings_model_has_a_table() -> None:
    for module in SETTINGS_MODULES:
        importlib.import_module(module)
    models = {FleetSettings, *_subclasses(FleetSettings)}
    documented = {
        settings_docs.model_of(path)
        for doc in settings_docs.DOCS_DIR.glob("*.md")
        for path in re.findall(r"<!-- settings: ([\w.]+:\w+) -->", doc.read_text())
    }
    missing = {model.__name__ for model in models - documented}
    assert not missing, f"settings without a table in docs/: {sorted(missing)}"


def test_a_stale_table_is_found_and_rewritten(tmp_path: Path) -> None:
    doc = tmp_path / "history.md"
    original = (settings_docs.DOCS_DIR / "history.md").read_text()
    doc.write_text(original.replace("| `10000` |", "| `2000` |", 1))
    assert doc.read_text() != original
    assert settings_docs.regenerate(tmp_path, check=True) == [doc]
    assert doc.read_text() != original  # --check only reports
    assert settings_docs.regenerate(tmp_path) == [doc]
    assert doc.read_text() == original


def test_a_setting_without_a_description_cannot_be_documented() -> None:
    class Undocumented(FleetSettings):
        widget_count: int = Field(3, ge=1)

    with pytest.raises(ValueError, match=r"Undocumented\.widget_count has no description"):
        settings_docs.table(Undocumented)


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        if sub.__module__.startswith("tests."):
            continue
        found |= {sub, *_subclasses(sub)}
    return found


def test_a_marker_naming_no_model_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "broken.md").write_text(
        "<!-- settings: fleetops.settings:NoSuchModel -->\n<!-- end settings -->\n"
    )
    with pytest.raises(ValueError, match=r"'fleetops\.settings:NoSuchModel' names no model"):
        settings_docs.regenerate(tmp_path, check=True)
