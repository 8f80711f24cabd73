"""Find a component's hook by ``module:attribute`` path.

Components (exporters, alerts, console, ...) plug into the CLI and the fleet through such paths,
so fleetops itself imports none of them; a component that is not installed is simply absent.
"""

from __future__ import annotations

import importlib
from typing import Any


def optional_hook(path: str) -> Any | None:
    """The attribute at ``module:attribute``, or None when that module does not exist.

    An ImportError raised *inside* an existing module still propagates: that is a bug to see,
    not a missing component.
    """
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    return getattr(module, attribute)


def hooks(paths: list[str]) -> list[Any]:
    """The hooks of the components present, in the given order."""
    return [hook for hook in map(optional_hook, paths) if hook is not None]
