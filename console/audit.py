"""The audit log of control actions: one JSON object per line (who, what, when, result)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def append(path: Path, *, who: str, what: str, result: str, **details: Any) -> dict[str, Any]:
    entry = {
        "when": datetime.now(UTC).isoformat(),
        "who": who,
        "what": what,
        "result": result,
        **details,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # One write per line in append mode: concurrent sessions never interleave within a line.
    with path.open("a", encoding="utf-8") as log:
        log.write(json.dumps(entry, default=str) + "\n")
    return entry


def read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
