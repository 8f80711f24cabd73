"""Tasks: search the task history, open one task's timeline, revoke or terminate it."""

from __future__ import annotations

from html import escape

import pandas as pd
import streamlit as st

from console import actions, apps, links, ui
from console.sources import SourceDown, control, history
from console.timeline import phases as timeline_phases


def detail_links(fields: dict, task_id: str, search: dict[str, str]) -> str:
    """The task's summary line, every id, worker and queue in it a link (same tab), then its
    workflow and the way back to the search it was found by."""
    name, worker, queue = fields.get("name"), fields.get("worker"), fields.get("queue")
    parent, root = fields.get("parent_id"), fields.get("root_id")
    parts = [
        f"<b>{escape(str(name))}</b> <code>{escape(task_id)}</code>: "
        f"<b>{escape(str(fields.get('state')))}</b>",
        "on " + (links.anchor(worker, links.worker(worker)) if worker else "?"),
        "queue " + (links.anchor(queue, links.queue(queue)) if queue else "?"),
        f"retries {escape(str(fields.get('retries') or 0))}",
        "parent " + (links.anchor(parent, links.task(parent)) if parent else "none"),
        "root " + (links.anchor(root, links.task(root)) if root and root != task_id else "itself"),
    ]
    more = [links.anchor("workflow", links.workflow(task_id))]
    if search:
        more.append(links.anchor("back to the search", links.tasks(**search)))
    if name:
        more.append(links.anchor(f"every {name}", links.tasks(name=name)))
    return ", ".join(parts) + "<br>" + " · ".join(more)


ctx = ui.page("Tasks")
STATES = [
    "", "PENDING", "RECEIVED", "STARTED", "SUCCESS", "FAILURE", "RETRY", "REVOKED", "REJECTED",
]  # fmt: skip
STATES += sorted(links.TASK_STATES - set(STATES))
LIMIT = 200
# The search form's widgets by the URL parameter they show: a link carries the search, and a
# search writes itself back into the URL, so the address bar can be pasted into a ticket.
FORM = {
    links.NAME: "f_name",
    links.STATE: "f_state",
    links.WORKER: "f_worker",
    links.QUEUE: "f_queue",
    links.SINCE: "f_since",
    links.UNTIL: "f_until",
    links.EXCEPTION: "f_exception",
    links.EXCEPTION_TEXT: "f_exception_text",
    links.TEXT: "f_text",
}
DEFAULTS = {links.SINCE: history.RECENT_WINDOW}
APPLIED = "tasks_url_applied"  # the URL the form was last filled from

url_filters, problems = links.checked(st.query_params, links.TASK_FILTERS)
url_task_id, task_id_problems = links.checked(st.query_params, (links.TASK_ID,))
for problem in problems + task_id_problems:
    st.error(problem)
url_state = (url_filters, url_task_id)
form_empty = any(key not in st.session_state for key in FORM.values())
if st.session_state.get(APPLIED) != url_state or form_empty:
    # A new link (or the first run): the form shows what the URL asks for.
    for name, key in FORM.items():
        st.session_state[key] = url_filters.get(name, DEFAULTS.get(name, ""))
    st.session_state["task_id"] = url_task_id.get(links.TASK_ID, "")
    st.session_state[APPLIED] = url_state

with st.form("search"):
    first, second, third = st.columns(3)
    first.text_input("Task name (exact)", key="f_name")
    second.selectbox("State", STATES, key="f_state")
    third.text_input("Worker", key="f_worker")
    first.text_input("Queue", key="f_queue")
    second.text_input("Since (ISO time or age: 15m, 2h, 7d)", key="f_since")
    third.text_input("Until", key="f_until")
    first.text_input("Exception class", key="f_exception")
    second.text_input("Exception message contains", key="f_exception_text")
    third.text_input("Arguments contain", key="f_text")
    submitted = st.form_submit_button("Search", key="search_submit")

search = {name: str(st.session_state[key]).strip() for name, key in FORM.items()}
search = {name: value for name, value in search.items() if value}
bad = [problem for name, value in search.items() if (problem := links.problem_with(name, value))]
for problem in bad:
    st.error(problem.replace("in the link", "in the search"))
if submitted and not bad:
    # The search replaces the URL's filters (and closes the task detail it may have shown).
    st.query_params.from_dict(links.keeping_app(search))
    st.session_state["task_id"] = ""
    st.session_state[APPLIED] = (search, {})

filters = history.TaskFilter(
    name=search.get(links.NAME),
    state=search.get(links.STATE),
    worker=search.get(links.WORKER),
    queue=search.get(links.QUEUE),
    since=search.get(links.SINCE),
    until=search.get(links.UNTIL),
    exception=search.get(links.EXCEPTION),
    exception_text=search.get(links.EXCEPTION_TEXT),
    text=search.get(links.TEXT),
)
page = None
if not bad:
    page = ui.fetch(lambda: ctx.read_history(history.search_page, filters, limit=LIMIT))
if page is not None:
    found, count = page
    shown = (
        f"more than {count - 1:,}" if count and count >= history.COUNT_CAP else f"{count or 0:,}"
    )
    st.caption(
        f"{shown} matching tasks; the newest {min(len(found), LIMIT)} shown. A task id opens "
        "its detail, a worker or queue its page (in a new tab)."
    )
    table = found.copy()
    table["task_id"] = [links.task(task_id, **search) for task_id in found["task_id"]]
    table["worker"] = [links.worker(w) if w else None for w in found["worker"]]
    table["queue"] = [links.queue(q) if q else None for q in found["queue"]]
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        key="results",
        column_config={
            "task_id": st.column_config.LinkColumn("task_id", display_text=r"task_id=([^&]*)"),
            "worker": st.column_config.LinkColumn("worker", display_text=r"worker=([^&]*)"),
            "queue": st.column_config.LinkColumn("queue", display_text=r"queue=([^&]*)"),
        },
    )

st.subheader("Task detail")
task_id = st.text_input("Task id", key="task_id").strip()
if task_id and task_id != url_task_id.get(links.TASK_ID):
    if links.problem_with(links.TASK_ID, task_id):
        st.error(links.problem_with(links.TASK_ID, task_id))
        st.stop()
    st.query_params[links.TASK_ID] = task_id
    st.session_state[APPLIED] = (url_filters, {links.TASK_ID: task_id})
elif not task_id and url_task_id:
    del st.query_params[links.TASK_ID]
    st.session_state[APPLIED] = (url_filters, {})
owner: str | None = None  # the app the task's row belongs to: the only one acting on it
configured = ctx.apps.configured  # one app: its older rows (app "default") are its own
if task_id:
    detail = ui.fetch(lambda: ctx.read_history(history.task_detail, task_id))
    if detail is None and ctx.app is not None:
        # A task id is one task across apps (the history's key): found under another app,
        # it is that app's task, and no other app's broker may retry or revoke it.
        other = ui.fetch(lambda: history.call(ctx.history, history.task_detail, task_id))
        owner = None if other is None else apps.task_owner(other.fields.get("app"), configured)
    elif detail is not None:
        owner = apps.task_owner(detail.fields.get("app"), configured)
    if detail is None:
        st.info(f"No task {task_id} in the history (or the history is down).")
    else:
        fields = detail.fields
        st.markdown(detail_links(fields, task_id, search), unsafe_allow_html=True)
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
        try:
            runs = ctx.read_history(history.task_runs, task_id)
        except SourceDown:
            # The runs are an extra: a history not yet migrated to keep them (or a database
            # that just failed) must not put a banner over the task it did show.
            runs = None
        if runs is not None and (runs["kind"] == "started").sum() > 1:
            # The timeline holds the latest attempt only; a task started more than once
            # (redelivered, or handed out twice by the broker) shows every run here.
            st.caption(
                f"Started {(runs['kind'] == 'started').sum()} times: every start and planned "
                "retry, with its worker (" + links.anchor("stuck & orphaned tasks",
                links.task_faults()) + ")",
                unsafe_allow_html=True,
            )  # fmt: skip
            st.dataframe(runs, hide_index=True, key="runs")
        if fields.get("exception"):
            st.code(f"{fields.get('exception_type')}: {fields.get('exception')}")
        if not detail.children.empty:
            st.caption("Tasks it started")
            children = detail.children.copy()
            children["task_id"] = [links.task(child) for child in children["task_id"]]
            st.dataframe(
                children,
                hide_index=True,
                key="children",
                column_config={
                    "task_id": st.column_config.LinkColumn(
                        "task_id", display_text=r"task_id=([^&]*)"
                    )
                },
            )
        if fields.get("state") == "FAILURE" and fields.get("name"):
            st.subheader("Retry")
            actions.guarded(
                ctx.settings,
                app=ctx.apps,
                key="retry",
                label="Send again",
                what=f"send {fields['name']} again with the arguments of {task_id}",
                run=lambda: "sent as "
                + control.retry(
                    ctx.celery, fields["name"], fields.get("args"), fields.get("kwargs"),
                    fields.get("queue"),
                ),
                details={"task_id": task_id},
                owner=owner,
            )  # fmt: skip

    st.subheader("Revoke")
    terminate = st.toggle("Also terminate it if it is running (SIGTERM)", key="terminate")
    verb = "terminate" if terminate else "revoke"
    actions.guarded(
        ctx.settings,
        app=ctx.apps,
        key="revoke",
        label=verb.capitalize(),
        what=f"{verb} task {task_id}",
        run=lambda: control.revoke(ctx.celery, task_id, terminate=terminate) or "sent",
        details={"task_id": task_id, "terminate": terminate},
        owner=owner,
    )
