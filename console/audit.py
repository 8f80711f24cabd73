"""The audit log of control actions: one JSON object per line.

Every action writes two entries that share an ``action_id``: its ``intent`` before it runs (who,
what, target and selection) and its ``result`` after (what happened, and what it touched). An
intent without a result is an action that was cut off mid-way: look at the target itself."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

INTENT = "intent"
RESULT = "result"


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


def intent(path: Path, *, who: str, what: str, **details: Any) -> str:
    """Write what is about to be done; the id links the result to it."""
    action_id = uuid.uuid4().hex
    append(path, who=who, what=what, result="", action_id=action_id, phase=INTENT, **details)
    return action_id


def outcome(
    path: Path, action_id: str, *, who: str, what: str, result: str, **details: Any
) -> dict[str, Any]:
    """Write what happened to the action ``action_id`` announced."""
    return append(
        path, who=who, what=what, result=result, action_id=action_id, phase=RESULT, **details
    )


def read(path: Path) -> list[dict[str, Any]]:
    """Every entry; a line that is not a JSON object (a disk that filled mid-line) is skipped."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def results(path: Path) -> list[dict[str, Any]]:
    """The result entries only: one per action that ran."""
    return [entry for entry in read(path) if entry.get("phase") == RESULT]
