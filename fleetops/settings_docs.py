"""The settings tables of the docs, generated from the settings models.

A table sits between two markers in a Markdown file under docs/:

    <!-- settings: exporters.history.settings:HistorySettings -->
    ...generated rows...
    <!-- end settings -->

and lists each field the model adds to the shared FleetSettings (all of them for
FleetSettings itself): its variable, its default and its description, all read from the model.
``fleetops docs`` rewrites the tables; ``fleetops docs --check`` fails when one is stale, so a
default or a description is written once, in the model, and the docs cannot drift from it.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from pydantic_settings import BaseSettings

from fleetops.settings import FleetSettings, env_name, shown_default

DOCS_DIR = Path(__file__).resolve().parent.parent / "docs"
_BLOCK = re.compile(
    r"(?P<begin><!-- settings: (?P<model>[\w.]+:\w+) -->\n).*?(?P<end><!-- end settings -->)",
    re.DOTALL,
)


def model_of(path: str) -> type[BaseSettings]:
    """The settings model a marker names; a ValueError naming the marker when it names none."""
    module, _, name = path.partition(":")
    try:
        model = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"settings marker {path!r} names no model: {exc}") from exc
    if not (isinstance(model, type) and issubclass(model, BaseSettings)):
        raise ValueError(f"settings marker {path!r} names no settings model")
    return model


def _default(model: type[BaseSettings], name: str) -> str:
    shown = shown_default(model, name)
    if shown in ("", "none"):
        return shown or "unset"
    # A value (a number, a list, a path, a URL) reads as code; a sentence stays prose.
    return f"`{shown}`" if _is_value(model, name, shown) else shown


def _is_value(model: type[BaseSettings], name: str, shown: str) -> bool:
    extra = model.model_fields[name].json_schema_extra
    described = isinstance(extra, dict) and "shown_as" in extra
    return not described or " " not in shown


def table(model: type[BaseSettings]) -> str:
    shared = set() if model is FleetSettings else set(FleetSettings.model_fields)
    lines = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, info in model.model_fields.items():
        if name in shared:
            continue
        if not info.description:
            raise ValueError(f"{model.__name__}.{name} has no description to document")
        meaning = " ".join(info.description.split())
        lines.append(f"| `{env_name(model, name)}` | {_default(model, name)} | {meaning} |")
    return "\n".join(lines) + "\n"


def render(text: str) -> str:
    """``text`` with every settings table regenerated."""
    return _BLOCK.sub(
        lambda m: m["begin"] + table(model_of(m["model"])) + m["end"],
        text,
    )


def regenerate(docs_dir: Path = DOCS_DIR, *, check: bool = False) -> list[Path]:
    """The docs whose settings tables were stale; rewritten unless ``check``."""
    stale = []
    for path in sorted(docs_dir.glob("*.md")):
        text = path.read_text()
        rendered = render(text)
        if rendered != text:
            stale.append(path)
            if not check:
                path.write_text(rendered)
    return stale
