"""Read built dashboards back as plain JSON: the panels, queries and variables in them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from dashboards.build import build_all, render

RANGE_SELECTOR = re.compile(r"\[([^\]]+)\]")
METRIC_BEFORE_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{")


def built_json() -> dict[str, dict[str, Any]]:
    """Each dashboard built through the SDK, rendered, and loaded back as JSON."""
    return {name: json.loads(render(model)) for name, model in build_all().items()}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data (rows are containers, not panels)."""
    for panel in dashboard.get("panels", []):
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def all_ids(dashboard: dict[str, Any]) -> list[int]:
    ids = []
    for panel in dashboard.get("panels", []):
        ids.append(panel["id"])
        ids += [child["id"] for child in panel.get("panels", [])]
    return ids


def query_variables(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in dashboard["templating"]["list"] if v["type"] == "query"]


def metric_names(expr: str) -> set[str]:
    return set(METRIC_BEFORE_SELECTOR.findall(expr))


def histogram_base(name: str) -> str:
    return re.sub(r"_(bucket|count|sum)$", "", name)
