"""Queues: depth over time against the breaking points, then priority sub-queues,
unacknowledged, oldest message age, consumers. ``?queue=<name>`` focuses on one queue: its
depth history, the workers that took its tasks, links to its tasks and failures."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from console import charts, links, metrics, trouble, ui
from console.sources.prometheus import range_frame

ctx = ui.page("Queues")
sel = metrics.exporter_selector(ctx.points, ctx.app)
bands = charts.signal_bands(ctx.points.queue_depth)
# Lines on one history chart: more than this many stop being told apart by colour.
HISTORY_LINES = 10


def snapshot() -> pd.DataFrame:
    """One row per queue; with several apps shown at once one per (app, queue), each row's
    links opening its own app: same-named queues of two apps are never added up."""
    prom, per_app = ctx.prometheus, ctx.per_app
    by_queue = {
        "depth": metrics.per_queue(prom, "sum", "celery_queue_length", sel, per_app),
        "unacked": metrics.per_queue(prom, "sum", "fleetops_queue_unacked", sel, per_app),
        "oldest message age (s)": metrics.per_queue(
            prom, "max", "fleetops_queue_oldest_message_age_seconds", sel, per_app
        ),
        "consumers": metrics.per_queue(prom, "sum", "celery_active_consumer_count", sel, per_app),
    }
    priorities = prom.query(f"fleetops_queue_length_by_priority{{{sel}}}")
    rows = []
    for app, queue in sorted(set().union(*by_queue.values()), key=lambda k: (k[1], k[0] or "")):
        row: dict[str, object] = {"app": app} if per_app else {}
        row["queue"] = queue
        row.update({column: values.get((app, queue), 0.0) for column, values in by_queue.items()})
        row["band"] = ui.band(ctx.points.queue_depth.level_of(float(row["depth"])))  # type: ignore[arg-type]
        for sample in priorities:
            if sample.labels.get("queue_name") == queue and (
                not per_app or metrics.row_app(sample.labels.get("app", "")) == app
            ):
                row[f"priority {sample.labels.get('priority')}"] = sample.value
        with links.app_of(app):
            row["open"] = links.queue(queue)
        rows.append(row)
    return pd.DataFrame(rows)


def focus_name() -> str | None:
    """The queue named in the URL, or None. A URL is anyone's text: checked as every page
    checks its parameters (console/links.py), and only ever compared with the known names."""
    asked, problems = links.checked(st.query_params, (links.QUEUE,))
    for problem in problems:
        st.warning(problem)
    return asked.get(links.QUEUE)


def depth_history(hours: int) -> pd.DataFrame:
    return range_frame(
        ctx.prometheus,
        metrics.depth_expr(ctx.points, ctx.app, ctx.per_app),
        metrics.grouping("queue_name", ctx.per_app)[::-1],  # "images @ billing"
        seconds=hours * 3600,
        step=max(15, hours * 3600 / 240),
    )


def focus(name: str, row: pd.Series, history: pd.DataFrame | None) -> None:
    st.subheader(f"Queue {trouble.plain(name)}")
    st.markdown(
        " · ".join(
            [
                links.markdown("its tasks", links.tasks(queue=name)),
                links.markdown("its failed tasks", links.tasks(queue=name, state="FAILURE")),
                links.markdown("its failures", links.failures(queue=name)),
            ]
        )
    )
    depth = float(row["depth"])
    level = ctx.points.queue_depth.level_of(depth)
    cols = st.columns(4)
    cols[0].metric("Depth", f"{depth:,.0f}")
    cols[1].metric("Band", level.value)
    cols[2].metric("Consumers", f"{float(row['consumers']):g}")
    cols[3].metric("Oldest message", metrics.minutes_text(float(row["oldest message age (s)"])))
    if history is not None:
        frame = charts.history_frame(history, [name])
        if frame.empty:
            st.info("No depth history for this queue in that window.")
        else:
            ui.chart(
                charts.history_chart(
                    frame, bands, key="focus_history", value_title="messages", log=True
                ),
                key="queue_focus_history",
                description=f"Depth of queue {name} over time against the queue depth bands.",
            )
    received = ui.fetch(lambda: metrics.received_by_queue_and_worker(ctx.prometheus, ctx.points))
    if received is not None:
        st.markdown(f"**Workers that took its tasks in the last {metrics.RECENT_WINDOW}**")
        workers = received.get(name, {})
        if not workers:
            st.info(f"No worker took a task from {trouble.plain(name)} lately.")
        else:
            st.markdown(
                "\n".join(
                    f"- {links.markdown(host, links.worker(host))}: {count:,.0f} tasks "
                    f"({links.markdown('tasks', links.tasks(queue=name, worker=host))})"
                    for host, count in sorted(workers.items(), key=lambda kv: -kv[1])
                )
            )


frame = ui.fetch(snapshot)
if frame is not None:
    hours = st.select_slider(
        "History", options=[1, 3, 6, 24], value=1, format_func=lambda h: f"{h} h"
    )
    history = ui.fetch(lambda: depth_history(hours))
    name = focus_name()
    known = frame.set_index("queue") if not frame.empty else None
    if name is not None and ctx.per_app:
        # Several apps, none chosen: the queue's rows below open it in their own app.
        st.info(f"Queue {trouble.plain(name)}: choose an app (sidebar or a row below).")
    elif name is not None:
        if known is not None and name in known.index:
            focus(name, known.loc[name], history)
            st.divider()
        else:
            st.warning(f"No queue named {trouble.plain(name)} is known: showing every queue.")
    st.subheader("Depth over time")
    st.caption(ui.bands_text(bands) + " A log scale: a queue of 4 stays visible.")
    if history is not None:
        # The deepest queues now; the table below lists every one.
        latest = history.ffill().iloc[-1] if not history.empty else pd.Series(dtype=float)
        deepest = latest.sort_values(ascending=False).index[:HISTORY_LINES].tolist()
        lines = charts.history_frame(history, deepest)
        if lines.empty:
            st.info("No depth history in that window.")
        else:
            if len(history.columns) > HISTORY_LINES:
                st.caption(
                    f"The {HISTORY_LINES} deepest of {len(history.columns)} queues; "
                    "open a queue below for its own chart."
                )
            ui.chart(
                charts.history_chart(lines, bands, key="history", value_title="messages", log=True),
                key="queues_history",
                description="Depth of the deepest queues over time against the depth bands.",
            )
    st.subheader("Every queue")
    st.dataframe(
        frame,
        hide_index=True,
        width="stretch",
        column_config={"open": st.column_config.LinkColumn("open", display_text="focus")},
    )
