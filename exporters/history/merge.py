"""Fold a batch of Celery events into one row per task, one per worker and one per run.

The same rule decides a task's state here (within a batch) and in the SQL upsert (across
batches, see upsert.py), so the stored result does not depend on the order or the number of
times events arrive:

* every event carries a *state key* ``(state_class, timestamp, rank)``; the state of the event
  with the greatest key wins;
* ``state_class`` is 0 for task-sent (a client's clock must never beat a worker's), 1 for the
  events of a running attempt (received, started, retried, rejected) and 2 for the final ones
  (succeeded, failed, revoked): a late or replayed ``task-received`` never overwrites SUCCESS;
* within a class the event's own timestamp orders attempts (a retry re-uses the task id), and
  ``rank`` breaks ties between events stamped in the same instant;
* lifecycle timestamps keep the latest value per column, other fields the first non-empty one.

Runs (``history_task_runs``) are the one place where nothing is merged: every task-started and
task-retried event is a row of its own, keyed by ``(task_id, kind, at, worker)``, so a task
started twice keeps both starts. The same event twice in a batch gives the key once, so the
database gets each row once and the count of runs written is true; across batches the
insert skips keys already stored (upsert.py).

Every event carries its ``app``: the recorder stamps it from the stream that delivered the
event, never from the event's own fields (docs/history.md, "Several apps"); an event without
one belongs to the writer's default app. A task belongs to the app that first wrote it: an
event of another app for the same task id changes nothing and is counted in ``foreign``.
Workers are keyed by (hostname, app).

Events arrive checked (exporters/stream/events.py): fields have their types and bounds, the
exception type is parsed there (the same as the metrics' ``exception`` label), and what is
left here is the recorder's own privacy cut of arguments and tracebacks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from exporters.history.schema import tasks, workers
from exporters.history.settings import HistorySettings
from exporters.stream.events import WORKER_NUMBERS as STREAM_WORKER_NUMBERS
from fleetops.apps import DEFAULT_APP
from fleetops.settings import field_default

Event = dict[str, Any]

# event type -> (state, state_class, rank, lifecycle column)
TASK_EVENTS: dict[str, tuple[str, int, int, str]] = {
    "task-sent": ("PENDING", 0, 0, "sent_at"),
    "task-received": ("RECEIVED", 1, 1, "received_at"),
    "task-started": ("STARTED", 1, 2, "started_at"),
    "task-rejected": ("REJECTED", 1, 3, "rejected_at"),
    "task-retried": ("RETRY", 1, 4, "retried_at"),
    "task-revoked": ("REVOKED", 2, 1, "revoked_at"),
    "task-failed": ("FAILURE", 2, 2, "failed_at"),
    "task-succeeded": ("SUCCESS", 2, 3, "succeeded_at"),
}
WORKER_EVENTS = {
    "worker-online": "online",
    "worker-heartbeat": "online",
    "worker-telemetry": "online",
    "worker-offline": "offline",
}
# Checked and bounded in exporters/stream/events.py; these are the columns they fill.
WORKER_NUMBERS = tuple(STREAM_WORKER_NUMBERS)
LIFECYCLE_COLUMNS = tuple(spec[3] for spec in TASK_EVENTS.values())
# Fields copied from task events when present; the first non-empty value is kept.
DESCRIPTIVE_FIELDS = ("name", "queue", "exchange", "routing_key", "root_id", "parent_id")
TEXT_FIELDS = ("eta", "expires")

_TASK_TEMPLATE: dict[str, Any] = {str(column.name): None for column in tasks.columns}
_WORKER_TEMPLATE: dict[str, Any] = {str(column.name): None for column in workers.columns}
# The events that are runs, and the kind each is stored as (schema.RUN_KINDS).
RUN_EVENTS = {"task-started": "started", "task-retried": "retried"}
# (task_id, kind, at, worker, app): the table's key, and the app the run belongs to.
RunKey = tuple[str, str, float, str, str]


@dataclass(frozen=True)
class Limits:
    """The recorder's privacy and size cuts: each is the setting FLEETOPS_HISTORY_<FIELD>, and
    its default."""

    record_args: bool = field_default(HistorySettings, "history_record_args")
    args_max_chars: int = field_default(HistorySettings, "history_args_max_chars")
    traceback_max_chars: int = field_default(HistorySettings, "history_traceback_max_chars")


def truncate(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    # The ellipsis tells the reader the value was cut, not that the task got a shorter one.
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _later(current: float | None, candidate: float) -> float:
    return candidate if current is None or candidate > current else current


class BatchMerger:
    """Accumulates events; ``task_rows``/``worker_rows`` give one merged row per key."""

    def __init__(self, limits: Limits | None = None, default_app: str = DEFAULT_APP) -> None:
        self.limits = limits or Limits()
        self.default_app = default_app
        self.tasks: dict[str, dict[str, Any]] = {}
        self.workers: dict[tuple[str, str], dict[str, Any]] = {}
        self.runs: set[RunKey] = set()
        self.ignored = 0
        self.malformed = 0
        # Events of one app for a task id another app's events in this batch already claimed.
        self.foreign = 0

    def __len__(self) -> int:
        return len(self.tasks) + len(self.workers)

    def clear(self) -> None:
        self.tasks.clear()
        self.workers.clear()
        self.runs.clear()
        self.ignored = 0
        self.malformed = 0
        self.foreign = 0

    def add_all(self, events: Iterable[Event]) -> None:
        for event in events:
            self.add(event)

    def add(self, event: Event) -> bool:
        """Fold one event in; False (and counted in ``malformed``) when it cannot be read."""
        try:
            kind = event.get("type")
            spec = TASK_EVENTS.get(kind)  # type: ignore[arg-type]
            if spec is not None:
                self._add_task(event, spec)
            elif kind in WORKER_EVENTS:
                self._add_worker(event, WORKER_EVENTS[kind])
            else:
                self.ignored += 1
        except Exception:
            # Checked events cannot fail here; should a bug make one, skip the event, never
            # the batch. Fields folded in before the error are plain values, still valid.
            self.malformed += 1
            return False
        return True

    def _add_task(self, event: Event, spec: tuple[str, int, int, str]) -> None:
        task_id = event["uuid"]
        app = event.get("app") or self.default_app
        row = self.tasks.get(task_id)
        if row is not None and row["app"] != app:
            self.foreign += 1
            return
        state, state_class, rank, column = spec
        timestamp = event["timestamp"]
        run = RUN_EVENTS.get(event["type"])
        if run is not None:
            # The worker as the task row stores it; "" rather than NULL: it is part of the key.
            self.runs.add((task_id, run, timestamp, event.get("hostname") or "", app))
        if row is None:
            row = _TASK_TEMPLATE.copy()
            row["task_id"] = task_id
            row["app"] = app
            row["state"] = state
            row["state_class"], row["state_ts"], row["state_rank"] = state_class, timestamp, rank
            row["timestamp"] = timestamp
            wins = True
            self.tasks[task_id] = row
        else:
            wins = (state_class, timestamp, rank) > (
                row["state_class"],
                row["state_ts"],
                row["state_rank"],
            )
            if wins:
                row["state"] = state
                row["state_class"], row["state_ts"], row["state_rank"] = (
                    state_class,
                    timestamp,
                    rank,
                )
            if timestamp > row["timestamp"]:
                row["timestamp"] = timestamp
        row[column] = _later(row[column], timestamp)

        for field in DESCRIPTIVE_FIELDS:
            if row[field] is None:
                value = event.get(field)
                if value:
                    row[field] = value
        if state_class:  # task-sent names the client's host, not the worker
            hostname = event.get("hostname")
            if hostname and (wins or row["worker"] is None):
                row["worker"] = hostname
        retries = event.get("retries")
        if retries is not None and (row["retries"] is None or retries > row["retries"]):
            row["retries"] = retries
        if "args" in event or "kwargs" in event or "result" in event:
            self._add_payload(row, event)
        for field in TEXT_FIELDS:
            value = event.get(field)
            if value and row[field] is None:
                row[field] = value
        runtime = event.get("runtime")
        if runtime is not None:
            row["runtime"] = runtime
        exception = event.get("exception")
        if exception and (wins or row["exception"] is None):
            limit = self.limits.traceback_max_chars
            row["exception"] = truncate(exception, limit)
            row["exception_type"] = event.get("exception_type")
            row["traceback"] = truncate(event.get("traceback"), limit)
        if row["runtime"] is None and row["failed_at"] and row["started_at"]:
            row["runtime"] = max(0.0, row["failed_at"] - row["started_at"])

    def run_rows(self) -> list[dict[str, Any]]:
        """One row per distinct run, in key order (so concurrent recorders insert, and wait
        on each other's keys, in the same order). Name and queue come from the batch's row of
        the task: a start names neither, and the task-sent or task-received that does is
        usually in the same batch; otherwise they stay NULL and the task row has them."""
        rows = []
        for key in sorted(self.runs):
            task = self.tasks.get(key[0])
            rows.append({
                "task_id": key[0], "kind": key[1], "at": key[2], "worker": key[3],
                "name": task["name"] if task is not None else None,
                "queue": task["queue"] if task is not None else None,
                "app": key[4],
            })  # fmt: skip
        return rows

    def _add_payload(self, row: dict[str, Any], event: Event) -> None:
        if not self.limits.record_args:
            return
        limit = self.limits.args_max_chars
        for field in ("args", "kwargs", "result"):
            if row[field] is None:
                value = event.get(field)
                if value is not None:
                    row[field] = truncate(value, limit)

    def _add_worker(self, event: Event, status: str) -> None:
        hostname = event["hostname"]
        app = event.get("app") or self.default_app
        timestamp = event["timestamp"]
        row = self.workers.get((hostname, app))
        if row is None:
            row = _WORKER_TEMPLATE.copy()
            row.update(
                hostname=hostname,
                app=app,
                status=status,
                status_ts=timestamp,
                first_seen=timestamp,
                last_seen=timestamp,
            )
            self.workers[hostname, app] = row
        else:
            if timestamp >= row["status_ts"]:
                row["status"], row["status_ts"] = status, timestamp
            row["first_seen"] = min(row["first_seen"], timestamp)
            row["last_seen"] = max(row["last_seen"], timestamp)
        kind = event["type"]
        if kind == "worker-online":
            row["online_at"] = _later(row["online_at"], timestamp)
        elif kind == "worker-offline":
            row["offline_at"] = _later(row["offline_at"], timestamp)
        elif kind == "worker-heartbeat":
            row["heartbeat_at"] = _later(row["heartbeat_at"], timestamp)
        # Gauges: the newest event's value wins.
        newest = timestamp >= row["last_seen"]
        for field in WORKER_NUMBERS:
            value = event.get(field)
            if value is not None and (newest or row[field] is None):
                row[field] = value
        for field in ("sw_ident", "sw_ver", "sw_sys", "loadavg"):
            value = event.get(field)
            if value:
                row[field] = value
