"""Tasks: search the task history, open one task's timeline, revoke or terminate it."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from console import actions, ui
from console.sources import control, history
from console.timeline import phases as timeline_phases

ctx = ui.page("Tasks")
STATES = [
    "",
    "PENDING",
    "RECEIVED",
    "STARTED",
    "SUCCESS",
    "FAILURE",
    "RETRY",
    "REVOKED",
    "REJECTED",
]
LIMIT = 200

with st.form("search"):
    first, second, third = st.columns(3)
    name = first.text_input("Task name (exact)", key="f_name")
    state = second.selectbox("State", STATES, key="f_state")
    worker = third.text_input("Worker", key="f_worker")
    queue = first.text_input("Queue", key="f_queue")
    since = second.text_input(
        "Since (ISO time or age: 15m, 2h, 7d)", history.RECENT_WINDOW, key="f_since"
    )
    until = third.text_input("Until", key="f_until")
    exception = first.text_input("Exception class", key="f_exception")
    exception_text = second.text_input("Exception message contains", key="f_exception_text")
    text = third.text_input("Arguments contain", key="f_text")
    st.form_submit_button("Search", key="search_submit")

filters = history.TaskFilter(
    name=name or None,
    state=state or None,
    worker=worker or None,
    queue=queue or None,
    since=since or None,
    until=until or None,
    exception=exception or None,
    exception_text=exception_text or None,
    text=text or None,
)
try:
    history.to_epoch(filters.since)
    history.to_epoch(filters.until)
except ValueError as exc:
    st.error(str(exc))
    st.stop()

page = ui.fetch(lambda: history.call(ctx.history, history.search_page, filters, limit=LIMIT))
if page is not None:
    found, count = page
    shown = f"more than {count - 1:,}" if count and count >= 10_000 else f"{count or 0:,}"
    st.caption(f"{shown} matching tasks; the newest {min(len(found), LIMIT)} shown.")
    st.dataframe(found, hide_index=True, width="stretch", key="results")

st.subheader("Task detail")
task_id = st.text_input("Task id", st.query_params.get("task_id", ""), key="task_id").strip()
if task_id:
    detail = ui.fetch(lambda: history.call(ctx.history, history.task_detail, task_id))
    if detail is None:
        st.info(f"No task {task_id} in the history (or the history is down).")
    else:
        fields = detail.fields
        st.markdown(
            f"**{fields.get('name')}** `{task_id}`: **{fields.get('state')}** on "
            f"{fields.get('worker') or '?'} (queue {fields.get('queue') or '?'}), "
            f"retries {fields.get('retries') or 0}, parent {fields.get('parent_id') or 'none'}"
        )
        for column, (phase, seconds) in zip(
            st.columns(3), timeline_phases(fields).items(), strict=True
        ):
            column.metric(phase, "n/a" if seconds is None else f"{seconds:.2f} s")
        timeline = pd.DataFrame(
            [
                {"event": e.event, "at": e.at, "seconds since previous": e.since_previous}
                for e in detail.timeline
            ]
        )
        st.dataframe(timeline, hide_index=True, key="timeline")
        if fields.get("exception"):
            st.code(f"{fields.get('exception_type')}: {fields.get('exception')}")
        if not detail.children.empty:
            st.caption("Tasks it started")
            st.dataframe(detail.children, hide_index=True, key="children")
        if fields.get("state") == "FAILURE" and fields.get("name"):
            st.subheader("Retry")
            actions.guarded(
                ctx.settings,
                key="retry",
                label="Send again",
                what=f"send {fields['name']} again with the arguments of {task_id}",
                run=lambda: "sent as "
                + control.retry(
                    ctx.celery, fields["name"], fields.get("args"), fields.get("kwargs"),
                    fields.get("queue"),
                ),
                details={"task_id": task_id},
            )  # fmt: skip

    st.subheader("Revoke")
    terminate = st.toggle("Also terminate it if it is running (SIGTERM)", key="terminate")
    verb = "terminate" if terminate else "revoke"
    actions.guarded(
        ctx.settings,
        key="revoke",
        label=verb.capitalize(),
        what=f"{verb} task {task_id}",
        run=lambda: control.revoke(ctx.celery, task_id, terminate=terminate) or "sent",
        details={"task_id": task_id, "terminate": terminate},
    )
