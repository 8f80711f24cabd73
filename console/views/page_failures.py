"""Failures: failed tasks grouped by task and exception, with counts and first/last seen; each
group links to its matching tasks and to an example task's detail. ``?since=`` picks the
window, ``?queue=`` keeps the failures of one queue (a queue's page links here)."""

from __future__ import annotations

from html import escape

import streamlit as st

from console import links, ui
from console.sources import history

ctx = ui.page("Failures")
WINDOWS = ["1h", "6h", history.RECENT_WINDOW, "7d", "30d"]
LIMIT = 500

asked, problems = links.checked(st.query_params, (links.SINCE, links.QUEUE))
for problem in problems:
    st.warning(problem + " It is left out.")
queue = asked.get(links.QUEUE)
if queue:
    st.markdown(
        f"Failures of queue {links.anchor(queue, links.queue(queue))} only: "
        + links.anchor("every queue", links.failures(since=asked.get(links.SINCE))),
        unsafe_allow_html=True,
    )
url_window = asked.get(links.SINCE, history.RECENT_WINDOW)
# A link may carry any window the Tasks page reads ("3h", an ISO time): offer it as well.
options = WINDOWS if url_window in WINDOWS else [*WINDOWS, url_window]
if st.session_state.get("failures_url_window") != url_window:
    st.session_state["window"] = url_window
    st.session_state["failures_url_window"] = url_window
window = st.selectbox("Over the last", options, key="window")
if window != url_window:
    st.query_params[links.SINCE] = window
    st.session_state["failures_url_window"] = window


def group_row(row: dict, since: str) -> str:
    """One group as a Markdown table row: every link opens in the same tab."""
    name = row.get("name") or ""
    exception = row.get("exception_type") or ""
    matching = links.tasks(
        name=name, state="FAILURE", exception=exception, since=since, queue=queue
    )
    example = row.get("example_task_id")
    count = int(row["count"])
    cells = [
        links.anchor(name or "?", links.tasks(name=name, since=since, queue=queue))
        if name
        else "?",
        escape(exception) or "?",
        links.anchor(f"{count:,} task{'' if count == 1 else 's'}", matching),
        f"{row['first_seen']:%Y-%m-%d %H:%M:%S}",
        f"{row['last_seen']:%Y-%m-%d %H:%M:%S}",
        links.anchor(str(example)[:8] + "…", links.task(str(example))) if example else "",
    ]
    # A "|" in a hostile name would split the cell: escaped as its HTML entity.
    return "| " + " | ".join(cell.replace("|", "&#124;") for cell in cells) + " |"


grouped = ui.fetch(
    lambda: ctx.read_history(history.failures, since=window, queue=queue, limit=LIMIT)
)
if grouped is not None:
    if grouped.empty:
        st.success(f"No failure in the last {window}" + (" on this queue." if queue else "."))
    else:
        st.caption(
            f"{int(grouped['count'].sum()):,} failures in {len(grouped)} groups (UTC times). "
            "A count opens the matching tasks, an id one example's detail."
        )
        table = [
            "| task | exception | failed | first seen | last seen | example |",
            "|---|---|---|---|---|---|",
            *(group_row(row, window) for row in grouped.to_dict("records")),
        ]
        st.markdown("\n".join(table), unsafe_allow_html=True)
