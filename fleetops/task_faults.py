"""What makes a task orphaned, lost, stuck or run twice: the rules the exporter, the task
history and the console share (docs/task-faults.md).

* **Orphaned**: started on a worker that then went down (silent past the worker timeout, or
  restarted) with no terminal event, and not started again since. A worker that announced its
  shutdown (``worker-offline``) is still draining: Celery sends the event first and only then
  waits for the tasks running (warm shutdown), so those are orphaned only as ``drained_orphan``
  says.
* **Redelivered** / **lost**: an orphan ends when the task is started again (redelivered) or,
  failing that, when its redelivery window has passed (lost). Under ``task_acks_late`` Redis
  hands an unacknowledged message back after the visibility timeout; RabbitMQ does so as soon
  as the worker's connection closes. Without acks_late the message was acknowledged before the
  task ran, so nothing comes back.
* **Stuck**: running on a live worker for longer than its bound: the per-task bound configured,
  else the task's hard time limit (plus the grace the kill takes), else the default bound.
* **Run twice**: a task id started again within the same attempt: two ``task-started`` events
  of one task with no ``task-retried`` (a planned retry) between them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime

# A restored message still has to be picked up and started by a live worker.
REDELIVERY_GRACE_SECONDS = 60.0
# Without a known visibility timeout (RabbitMQ, or workers that announce none) an orphan waits
# this long for its redelivery before it counts as lost.
DEFAULT_REDELIVERY_WINDOW_SECONDS = 300.0
# A task past its hard time limit is killed by the pool; the kill and its task-failed event take
# a moment, so "stuck" starts this long after the limit.
TIME_LIMIT_GRACE_SECONDS = 30.0
# The bound of a task with neither a configured bound nor a known time limit.
DEFAULT_STUCK_AFTER_SECONDS = 3600.0
# A runtime or time limit at this share of the visibility timeout is about to be redelivered
# while it still runs (the trap), under acks_late.
NEAR_VISIBILITY_TIMEOUT_RATIO = 0.8


def _usable(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def redelivery_window(visibility_timeout: float | None, acks_late: bool | None) -> float:
    """Seconds after a task was orphaned by which its redelivery must have started; 0 when no
    redelivery can come (the workers announced they acknowledge before running)."""
    if acks_late is False:
        return 0.0
    if _usable(visibility_timeout):
        return float(visibility_timeout) + REDELIVERY_GRACE_SECONDS  # type: ignore[arg-type]
    return DEFAULT_REDELIVERY_WINDOW_SECONDS


def stuck_bound(
    name: str,
    *,
    bounds: Mapping[str, float],
    time_limit: float | None,
    default: float = DEFAULT_STUCK_AFTER_SECONDS,
) -> float:
    """Seconds a task of ``name`` may run before it is stuck."""
    configured = bounds.get(name)
    if _usable(configured):
        return float(configured)  # type: ignore[arg-type]
    if _usable(time_limit):
        return float(time_limit) + TIME_LIMIT_GRACE_SECONDS  # type: ignore[arg-type]
    return default


def drained_orphan(running_seconds: float, bound: float) -> bool:
    """Whether a task still running on a worker that sent ``worker-offline`` is orphaned now.

    A warm shutdown sends ``worker-offline`` before it waits for the running tasks, and waits
    at most until the pool's hard time limit kills them: so such a task is orphaned once it has
    run longer than its ``stuck_bound`` (``running_seconds``, on the observer's clock, from its
    start), and not before. A new process of that worker coming online orphans it at once (the
    old process is gone); that is the caller's to see, it needs no rule. An end event of the
    task ends it normally, orphaned or not."""
    return running_seconds > bound


def drained_orphan_at(started_at: float, offline_at: float, bound: float) -> float:
    """When ``drained_orphan`` turns true for a run started at ``started_at`` on a worker that
    sent worker-offline at ``offline_at``: for a reader of timestamps (the task history)."""
    return max(offline_at, started_at + bound)


def eta_epoch(text: object) -> float | None:
    """An ETA as epoch seconds: Celery sends ``datetime.isoformat()``, and a time without an
    offset is UTC (Celery's default ``enable_utc``). None for anything else: the text comes
    from a task event and may be garbage, so an unreadable ETA is skipped, never an error."""
    if type(text) is not str or not text or len(text) > 64:
        return None
    try:
        when = datetime.fromisoformat(text.strip())
        stamp = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    except (ValueError, OverflowError, OSError):
        return None
    return stamp if math.isfinite(stamp) else None


def eta_beyond_visibility(
    eta: float | None, received: float, visibility_timeout: float | None
) -> bool:
    """A task held for its ETA longer than the visibility timeout is handed out again while it
    waits, and then runs once per copy."""
    if eta is None or not _usable(visibility_timeout) or not math.isfinite(eta):
        return False
    return eta - received > visibility_timeout  # type: ignore[operator]
