"""Where a task's time went: waiting in the queue, waiting in the worker, running."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd


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


def _done(row: Any) -> Any:
    for column in ("succeeded_at", "failed_at", "revoked_at", "rejected_at"):
        value = row.get(column)
        if value is not None and not pd.isna(value):
            return value
    return None


def _known(value: Any) -> bool:
    return value is not None and not pd.isna(value)


def workflow_bars(frame: pd.DataFrame) -> pd.DataFrame:
    """A Gantt chart's bars for a workflow's tasks (``queries.workflow`` rows): per task a
    "queue wait" bar from sent (else received) to started and a "running" bar from started to
    its end (succeeded, failed, revoked or rejected; the last event seen while it runs).

    Columns: task_id, task (short id and name, the chart's row), phase, start, end, seconds,
    state, retries. A task missing the events for a phase has no bar for it."""
    bars: list[dict[str, Any]] = []
    for row in frame.to_dict("records"):
        # The short id first: a long task name is cut at the axis' label limit, the id never.
        label = f"{str(row['task_id'])[:8]} {row.get('name') or '?'}"
        queued = row.get("sent_at") if _known(row.get("sent_at")) else row.get("received_at")
        started, done = row.get("started_at"), _done(row)
        if not _known(done) and _known(started):
            done = row.get("timestamp")
        spans = (("queue wait", queued, started), ("running", started, done))
        for phase, start, end in spans:
            if _known(start) and _known(end) and end >= start:
                bars.append(
                    {
                        "task_id": row["task_id"],
                        "task": label,
                        "phase": phase,
                        "start": start,
                        "end": end,
                        "seconds": (end - start).total_seconds(),
                        "state": row.get("state"),
                        "retries": int(row.get("retries") or 0),
                    }
                )
    columns = ["task_id", "task", "phase", "start", "end", "seconds", "state", "retries"]
    return pd.DataFrame(bars, columns=columns)
