"""Workflow: the canvas a task belongs to, drawn from its root (every task of the root with its
state, as a graph) and a timeline of its queue waits and runtimes. ``?task_id=`` names any
task of the workflow."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from console import links, ui
from console.sources import history
from console.timeline import workflow_bars
from console.workflow import DRAW_MAX, dot

ctx = ui.page("Workflow")
# Bounds that keep a huge canvas from hanging the page: the tasks read from the history, and
# the bars drawn in the timeline (a Gantt chart of thousands of rows is unreadable anyway).
LIMIT = 2000
TIMELINE_MAX = 300

params, problems = links.checked(st.query_params, (links.TASK_ID,))
for problem in problems:
    st.error(problem)
asked = st.text_input(
    "Task id (any task of the workflow)", params.get(links.TASK_ID, ""), key="wf_task_id"
).strip()
if not asked:
    st.info("Open a workflow from a task's detail (Tasks page), or paste a task id above.")
    st.stop()
problem = links.problem_with(links.TASK_ID, asked)
if problem:
    st.error(problem)
    st.stop()
if asked != params.get(links.TASK_ID):
    st.query_params[links.TASK_ID] = asked

root = ui.fetch(lambda: ctx.read_history(history.workflow_root, asked))
if root is None:
    st.info(f"No task {asked} in the history (or the history is down).")
    st.stop()
found = ui.fetch(lambda: ctx.read_history(history.workflow, root, limit=LIMIT))
if found is None:
    st.stop()
frame, count = found
if frame.empty:
    st.info(f"The root {root} of task {asked} is not in the history (retention removed it?).")
    st.stop()

states = frame["state"].value_counts()
st.markdown(
    f"Workflow of {links.anchor(root[:8] + '…', links.task(root))} "
    f"(opened for {links.anchor(asked[:8] + '…', links.task(asked))}): "
    + ", ".join(f"**{state}** {number:,}" for state, number in states.items()),
    unsafe_allow_html=True,
)
if count > LIMIT:
    st.warning(f"This workflow has more than {LIMIT:,} tasks: the first {LIMIT:,} sent are shown.")
if frame["root_id"].isna().all() or not (frame["task_id"] == root).any():
    st.caption("The root task is not in the history: the graph starts at its children.")

st.subheader("Graph")
if len(frame) > DRAW_MAX:
    st.caption(
        f"{len(frame):,} tasks: one box per task name (a box per task is drawn up to "
        f"{DRAW_MAX}); a box opens the Tasks page for that name."
    )
else:
    st.caption("Each box is a task, coloured by its state; click one to open its detail.")
st.graphviz_chart(dot(frame, root, focus=asked))

st.subheader("Timeline")
bars = workflow_bars(frame.head(TIMELINE_MAX))
if len(frame) > TIMELINE_MAX:
    st.caption(f"The first {TIMELINE_MAX} tasks sent of {len(frame):,}.")
if bars.empty:
    st.info("No task of this workflow has its start and end times recorded yet.")
else:
    first = bars["start"].min()
    last = bars["end"].max()
    waits = bars[bars["phase"] == "queue wait"]["seconds"]
    columns = st.columns(4)
    columns[0].metric("whole workflow", f"{(last - first).total_seconds():.2f} s")
    columns[1].metric("longest queue wait", f"{waits.max() if len(waits) else 0:.2f} s")
    columns[2].metric("tasks", f"{count:,}" if count <= LIMIT else f"> {LIMIT:,}")
    columns[3].metric("retries", f"{int(frame['retries'].fillna(0).sum()):,}")
    order = bars.sort_values("start").drop_duplicates("task")["task"].tolist()
    chart = (
        alt.Chart(bars)
        .mark_bar()
        .encode(
            x=alt.X("start:T", title="time (UTC)", axis=alt.Axis(format="%H:%M:%S.%L")),
            x2="end:T",
            y=alt.Y("task:N", sort=order, title=None, axis=alt.Axis(labelLimit=300)),
            color=alt.Color(
                "phase:N",
                scale=alt.Scale(domain=["queue wait", "running"], range=["#bbbbbb", "#4c78a8"]),
            ),
            tooltip=[
                "task_id",
                "phase",
                alt.Tooltip("seconds:Q", format=".3f"),
                "state",
                "retries",
            ],
        )
        .properties(height=min(40 + 22 * len(order), 2400))
    )
    st.altair_chart(chart, width="stretch")

st.subheader("Tasks")
table = pd.DataFrame(
    {
        "task": [links.task(task_id) for task_id in frame["task_id"]],
        "name": frame["name"],
        "state": frame["state"],
        "parent": frame["parent_id"].fillna("").str[:8],
        "worker": frame["worker"],
        "retries": frame["retries"],
        "runtime (s)": frame["runtime"],
        "exception": frame["exception_type"],
    }
)
st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    key="workflow_tasks",
    column_config={
        "task": st.column_config.LinkColumn("task", display_text=r"task_id=([0-9a-zA-Z-]{1,8})"),
    },
)
