"""Stuck & orphaned: the tasks no other tool shows, worst first. Orphaned tasks (their worker
died under them: lost first, then those waiting for their redelivery, then the redelivered
ones), stuck tasks (running past their bound on a live worker), tasks run twice (each run's
worker and start), and the visibility-timeout trap that causes them, with its numbers.

Counts and the fleet's settings come from Prometheus (the exporter's metrics), the lists from
the task history; each source may be down without hiding the other's part. The rules are
fleetops/task_faults.py's."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from console import links, ui
from console import task_faults as faults
from console.durations import duration_text
from console.sources import history
from fleetops import task_faults as rules

ctx = ui.page("Stuck & orphaned")
LIMIT = 100
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
st.caption(
    "Tasks whose worker went down while they ran (orphaned: lost, or waiting to be delivered "
    "again), tasks running past their bound on a live worker (stuck), tasks started twice "
    "within one attempt, and the broker's visibility timeout that hands tasks out twice. "
    f"Worst first, the last {faults.WINDOW}, UTC times; a task id opens its detail."
)

fleet = ui.fetch(lambda: faults.read(ctx.prometheus, ctx.points))
known = fleet or faults.Fleet()


def runbooks(*names: str) -> str:
    return "Runbooks: " + " · ".join(links.markdown(name, links.runbook(name)) for name in names)


counts = known.counts
shown = [
    ("Orphaned now", counts.orphaned),
    ("Stuck now", counts.stuck),
    (f"Run twice ({faults.WINDOW})", counts.ran_twice),
    (f"Lost ({faults.WINDOW})", counts.lost),
    (f"ETA beyond timeout ({faults.WINDOW})", counts.eta_beyond),
]
for column, (label, value) in zip(st.columns(len(shown)), shown, strict=True):
    column.metric(label, faults.count_text(value))
if fleet is not None and counts == faults.Counts():
    st.info(
        "Prometheus has no usable number in the exporter's task-fault series "
        "(fleetops_tasks_orphaned, ...): an exporter older than them, one not scraped yet, or "
        "values that are not numbers. The lists below come from the task history."
    )
if fleet is None:
    st.info(
        "Counts, stuck bounds and the visibility timeout need Prometheus: the lists below use "
        f"the defaults (stuck after {duration_text(rules.DEFAULT_STUCK_AFTER_SECONDS)}, "
        f"lost {duration_text(known.redelivery_window)} after the worker went down)."
    )
st.markdown(
    runbooks(
        faults.ORPHANED_ALERT, faults.LOST_ALERT, faults.STUCK_ALERT, faults.RAN_TWICE_ALERT,
        faults.ETA_ALERT, faults.NEAR_ALERT,
    )
)  # fmt: skip


@dataclass(frozen=True)
class Lists:
    orphaned: pd.DataFrame
    stuck: pd.DataFrame
    twice: pd.DataFrame
    runs: dict[str, pd.DataFrame]
    eta: pd.DataFrame | None  # None without a known visibility timeout


def read_history() -> Lists:
    # One fetch for every list: a history that is down shows one banner, not four.
    twice = ctx.read_history(history.twice_run_tasks, since=faults.WINDOW, limit=LIMIT)
    # Every listed task's runs in one query: one per task would be up to LIMIT round trips.
    runs = ctx.read_history(history.runs_of, [str(t) for t in twice["task_id"]])
    timeout = known.visibility_timeout
    return Lists(
        orphaned=ctx.read_history(
            history.orphaned_tasks, worker_timeout=faults.WORKER_TIMEOUT,
            redelivery_window=known.redelivery_window, since=faults.WINDOW, limit=LIMIT,
            # A task on a worker that announced its shutdown is drained there first: orphaned
            # once past the same bound that makes it stuck.
            bounds=known.bounds, default_bound=rules.DEFAULT_STUCK_AFTER_SECONDS,
        ),
        stuck=ctx.read_history(
            history.stuck_tasks, bounds=known.bounds,
            default_bound=rules.DEFAULT_STUCK_AFTER_SECONDS,
            worker_timeout=faults.WORKER_TIMEOUT, limit=LIMIT,
        ),
        twice=twice,
        runs={
            str(task_id): own.drop(columns="task_id").reset_index(drop=True)
            for task_id, own in runs.groupby("task_id", sort=False)
        },
        eta=None if timeout is None else ctx.read_history(
            history.eta_beyond_visibility, visibility_timeout=timeout,
            since=faults.WINDOW, limit=LIMIT,
        ),
    )  # fmt: skip


def when(stamp: object) -> str | None:
    return None if pd.isna(stamp) else f"{stamp:{TIME_FORMAT}}"  # type: ignore[str-format]


def text(value: object) -> str | None:
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def task_links(frame: pd.DataFrame) -> list[str]:
    return [links.task(str(task_id)) for task_id in frame["task_id"]]


def worker_links(values: pd.Series) -> list[str | None]:
    return [links.worker(str(w)) if text(w) else None for w in values]


LINKED = {
    # The link's own text: the id or hostname it carries.
    "task": st.column_config.LinkColumn("task", display_text=r"task_id=([^&]*)"),
    "worker": st.column_config.LinkColumn("worker", display_text=r"worker=([^&]*)"),
    "finished on": st.column_config.LinkColumn("finished on", display_text=r"worker=([^&]*)"),
}


def table(frame: pd.DataFrame, key: str) -> None:
    st.dataframe(
        frame,
        hide_index=True,
        width="stretch",
        key=key,
        column_config={k: v for k, v in LINKED.items() if k in frame.columns},
    )


def orphaned_section(found: pd.DataFrame) -> None:
    st.subheader("Orphaned")
    st.caption(
        "Started on a worker that then restarted or fell silent for "
        f"{duration_text(faults.WORKER_TIMEOUT)}, or went offline (a shutdown that "
        "waits for its running tasks) and the task then ran past its stuck bound, with no "
        "end. Lost once "
        f"{duration_text(known.redelivery_window)} passed without a redelivery"
        + (" (no acks_late: nothing comes back)" if known.acks_late is False else "")
        + "; redelivered when started again elsewhere."
    )
    if found.empty:
        st.success(f"No task was orphaned in the last {faults.WINDOW}.")
        return
    lost = int((found["outcome"] == "lost").sum())
    waiting = int((found["outcome"] == "waiting").sum())
    if lost:
        st.error(
            f"{lost} task{'s' if lost != 1 else ''} lost: it will not run unless sent again. "
            + runbooks(faults.LOST_ALERT)
        )
    if waiting:
        st.warning(
            f"{waiting} task{'s' if waiting != 1 else ''} waiting for redelivery. "
            + runbooks(faults.ORPHANED_ALERT)
        )
    table(
        pd.DataFrame(
            {
                "outcome": found["outcome"],
                "task": task_links(found),
                "name": found["name"],
                "queue": found["queue"],
                "worker": worker_links(found["worker"]),
                "started": [when(s) for s in found["started_at"]],
                "worker last heard": [when(s) for s in found["worker_seen_at"]],
                "finished on": worker_links(found["finished_on"]),
                "state": found["state"],
            }
        ),
        "orphaned",
    )


def stuck_section(found: pd.DataFrame) -> None:
    st.subheader("Stuck")
    st.caption(
        "Running on a live worker for longer than its bound: the per-task bound or time limit "
        "the exporter reports (fleetops_task_stuck_bound_seconds), else "
        f"{duration_text(rules.DEFAULT_STUCK_AFTER_SECONDS)}."
    )
    if found.empty:
        st.success("No task runs past its bound.")
        return
    st.warning(f"{len(found)} task{'s' if len(found) != 1 else ''} stuck. " + runbooks(
        faults.STUCK_ALERT
    ))  # fmt: skip
    table(
        pd.DataFrame(
            {
                "task": task_links(found),
                "name": found["name"],
                "queue": found["queue"],
                "worker": worker_links(found["worker"]),
                "started": [when(s) for s in found["started_at"]],
                "running": [duration_text(s) for s in found["running_seconds"]],
                "bound": [duration_text(s) for s in found["bound_seconds"]],
                "over by": [
                    duration_text(r - b)
                    for r, b in zip(found["running_seconds"], found["bound_seconds"], strict=True)
                ],
            }
        ),
        "stuck",
    )


def runs_text(runs: pd.DataFrame | None) -> str:
    """Each start of the task with its worker, a planned retry marked as such."""
    if runs is None or runs.empty:
        return ""
    return "; ".join(
        f"{'retried' if kind == 'retried' else 'started'} on {worker or '?'} at {when(at)}"
        for kind, at, worker in zip(runs["kind"], runs["at"], runs["worker"], strict=True)
    )


def twice_section(found: pd.DataFrame, runs: dict[str, pd.DataFrame]) -> None:
    st.subheader("Run twice")
    st.caption(
        "The same task id started again within one attempt (a planned retry is not counted): "
        "a redelivery after its worker died, or the visibility-timeout trap below."
    )
    if found.empty:
        st.success(f"No task ran twice in the last {faults.WINDOW}.")
        return
    st.warning(f"{len(found)} task{'s' if len(found) != 1 else ''} ran more than once. " + runbooks(
        faults.RAN_TWICE_ALERT
    ))  # fmt: skip
    table(
        pd.DataFrame(
            {
                "task": task_links(found),
                "name": found["name"],
                "queue": found["queue"],
                "state": found["state"],
                "runs": found["runs"],
                "each run": [runs_text(runs.get(str(t))) for t in found["task_id"]],
                "first started": [when(s) for s in found["first_started_at"]],
                "last started": [when(s) for s in found["last_started_at"]],
            }
        ),
        "twice",
    )


def trap_section(eta: pd.DataFrame | None, history_up: bool) -> None:
    st.subheader("Visibility-timeout trap")
    timeout = known.visibility_timeout
    if timeout is None:
        st.info(
            "No visibility timeout is known: the workers announce none (RabbitMQ hands a task "
            "back when its worker's connection closes, not after a timeout), or Prometheus did "
            "not answer. Set FLEETOPS_EXPORTER_VISIBILITY_TIMEOUT to tell the exporter."
        )
        return
    acks = {True: "on", False: "off", None: "unknown"}[known.acks_late]
    st.markdown(
        f"Visibility timeout in force: **{timeout:,.0f} s** ({duration_text(timeout)}); "
        f"`task_acks_late` **{acks}**. The broker hands an unacknowledged task to another "
        "worker once it has been out this long."
    )
    near = faults.near_visibility_timeout(known)
    if eta is not None and not eta.empty:
        st.warning(
            f"{len(eta)} task{'s' if len(eta) != 1 else ''} received with an ETA or countdown "
            f"further away than the visibility timeout ({duration_text(timeout)}): each "
            "is handed out again while it waits, and runs once per copy. Raise the visibility "
            "timeout, shorten the countdown, or keep long delays out of ETA. "
            + runbooks(faults.ETA_ALERT)
        )
        table(
            pd.DataFrame(
                {
                    "task": task_links(eta),
                    "name": eta["name"],
                    "queue": eta["queue"],
                    "state": eta["state"],
                    "received": [when(s) for s in eta["received_at"]],
                    "eta": [when(s) for s in eta["eta"]],
                    "ahead": [duration_text(s) for s in eta["ahead_seconds"]],
                }
            ),
            "eta",
        )
    if near:
        ratio = rules.NEAR_VISIBILITY_TIMEOUT_RATIO
        st.warning(
            f"{len(near)} task name{'s' if len(near) != 1 else ''} with a time limit or a run "
            f"at {ratio:.0%} or more of the visibility timeout: under acks_late a run that "
            "outlasts it is started again on another worker while it still runs. "
            + runbooks(faults.NEAR_ALERT)
        )
        table(
            pd.DataFrame(
                {
                    "name": [n.name for n in near],
                    "time limit": [duration_text(n.time_limit) for n in near],
                    "longest running now": [duration_text(n.running_longest) for n in near],
                    "share of the timeout": [f"{n.share:.0%}" for n in near],
                }
            ),
            "near",
        )
    if not history_up:
        st.info("The tasks received with an ETA need the task history (see the banner above).")
    elif (eta is None or eta.empty) and not near:
        st.success(
            "No task was received with an ETA beyond the visibility timeout, and no time limit "
            "or runtime comes near it."
        )


lists = ui.fetch(read_history)
if lists is not None:
    orphaned_section(lists.orphaned)
    stuck_section(lists.stuck)
    twice_section(lists.twice, lists.runs)
trap_section(None if lists is None else lists.eta, history_up=lists is not None)
