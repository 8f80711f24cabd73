"""Where a task's time went: waiting in the queue, waiting in the worker, running."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def _gap(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def phases(fields: dict[str, Any]) -> dict[str, float | None]:
    """Seconds in each phase; None where an event is missing (e.g. sent events are off)."""
    done = fields.get("succeeded_at") or fields.get("failed_at") or fields.get("revoked_at")
    return {
        "waiting in queue": _gap(fields.get("sent_at"), fields.get("received_at")),
        "waiting in worker": _gap(fields.get("received_at"), fields.get("started_at")),
        "running": _gap(fields.get("started_at"), done),
    }
