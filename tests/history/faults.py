"""A history holding every kind of task fault (fleetops/task_faults.py), written from
hand-made events: for the history's query tests and the console's Stuck & orphaned page.

Tasks and workers are written by the history writer; the runs table (history_task_runs) gets
one row per task-started and task-retried event of the same events, inserted here as the
recorder inserts them. A row the writer already stored is left alone, so these histories stay
the same whether or not the writer fills the runs table itself.

Times are offsets from ``t0``; "now" is ``t0 + NOW_OFFSET``:

* workers: alive@h and other@h heartbeat 5 s before now; dead@h is last heard at t0+100 (then
  SIGKILLed: known down at t0+130); gone@h goes offline at t0+200; restarted@h restarts at
  t0+300.
* orphan-lost (dead@h, t0+50), orphan-waiting (gone@h, t0+150), orphan-restart (restarted@h,
  t0+250): still STARTED on a worker that went down.
* stuck-named (slow.task, t0+100) and stuck-default (other.task, t0+50) run on alive@h;
  running (t0+900) and done (finished) do not count.
* redelivered: started on dead@h at t0+20, again on alive@h at t0+400, succeeded there.
* trap (trap.task): started twice on alive@h (t0+500, t0+560) while its worker lived.
* retried: started, retried, started: two attempts, not a second run.
* thrice: started on alive@h, other@h, alive@h (t0+100, 200, 300), then succeeded.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine, select

from exporters.history.schema import task_runs as runs_table
from tests.history.events import Event, task_lifecycle, worker_event
from tests.stream.checked import CheckedHistoryWriter as HistoryWriter

NOW_OFFSET = 1000.0
ALIVE, OTHER, DEAD, GONE = "alive@h", "other@h", "dead@h", "gone@h"
RESTARTED = "restarted@h"


def started(task_id: str, worker: str, at: float) -> Event:
    return {"type": "task-started", "uuid": task_id, "hostname": worker, "pid": 1,
            "timestamp": at}  # fmt: skip


def retried(task_id: str, worker: str, at: float) -> Event:
    return {"type": "task-retried", "uuid": task_id, "hostname": worker,
            "exception": "Retry()", "timestamp": at}  # fmt: skip


def succeeded(task_id: str, worker: str, at: float) -> Event:
    return {"type": "task-succeeded", "uuid": task_id, "hostname": worker, "runtime": 1.0,
            "result": "None", "timestamp": at}  # fmt: skip


def record(engine: Engine, events: Iterable[Event]) -> None:
    """Write the events, and each start and retry into history_task_runs as the recorder does."""
    events = list(events)
    HistoryWriter(engine).write(events)
    names = {e["uuid"]: (e.get("name"), e.get("queue")) for e in events if e.get("name")}
    kinds = {"task-started": "started", "task-retried": "retried"}
    rows = [
        {"task_id": e["uuid"], "kind": kinds[e["type"]], "at": e["timestamp"],
         "worker": e["hostname"], "name": names.get(e["uuid"], (None, None))[0],
         "queue": names.get(e["uuid"], (None, None))[1]}
        for e in events
        if e["type"] in kinds
    ]  # fmt: skip
    r = runs_table.c
    with engine.begin() as connection:
        stored = set(connection.execute(select(r.task_id, r.kind, r.at, r.worker)).all())
        new = [n for n in rows if (n["task_id"], n["kind"], n["at"], n["worker"]) not in stored]
        if new:
            connection.execute(runs_table.insert(), new)


def seed(engine: Engine, t0: float) -> None:
    now = t0 + NOW_OFFSET

    def task(
        task_id: str, *runs: Event, name: str = "maintenance.probe", worker: str = ALIVE
    ) -> list[Event]:
        """sent and received at t0-10, then the given starts, retries and outcome."""
        sent, received = task_lifecycle(task_id, name=name, start=t0 - 10, worker=worker)[:2]
        return [sent, received, *runs]

    record(
        engine,
        [
            worker_event("online", ALIVE, t0 - 100),
            worker_event("heartbeat", ALIVE, now - 5),
            worker_event("online", OTHER, t0 - 100),
            worker_event("heartbeat", OTHER, now - 5),
            worker_event("online", DEAD, t0 - 100),
            worker_event("heartbeat", DEAD, t0 + 100),
            worker_event("online", GONE, t0 - 100),
            worker_event("offline", GONE, t0 + 200),
            worker_event("online", RESTARTED, t0 - 100),
            worker_event("online", RESTARTED, t0 + 300),
            worker_event("heartbeat", RESTARTED, now - 5),
        ],
    )
    record(
        engine,
        [
            *task("orphan-lost", started("orphan-lost", DEAD, t0 + 50)),
            *task("orphan-waiting", started("orphan-waiting", GONE, t0 + 150)),
            *task("orphan-restart", started("orphan-restart", RESTARTED, t0 + 250)),
            *task("running", started("running", ALIVE, t0 + 900)),
            *task("stuck-named", started("stuck-named", ALIVE, t0 + 100), name="slow.task"),
            *task("stuck-default", started("stuck-default", ALIVE, t0 + 50), name="other.task"),
            *task("done", started("done", ALIVE, t0), succeeded("done", ALIVE, t0 + 900)),
            *task(
                "redelivered",
                started("redelivered", DEAD, t0 + 20),
                started("redelivered", ALIVE, t0 + 400),
                succeeded("redelivered", ALIVE, t0 + 410),
            ),
            *task(
                "trap",
                started("trap", ALIVE, t0 + 500),
                started("trap", ALIVE, t0 + 560),
                name="trap.task",
            ),
            *task(
                "retried",
                started("retried", ALIVE, t0 + 600),
                retried("retried", ALIVE, t0 + 610),
                started("retried", ALIVE, t0 + 700),
                succeeded("retried", ALIVE, t0 + 710),
            ),
            *task(
                "thrice",
                started("thrice", ALIVE, t0 + 100),
                started("thrice", OTHER, t0 + 200),
                started("thrice", ALIVE, t0 + 300),
                succeeded("thrice", ALIVE, t0 + 310),
            ),
        ],
    )
