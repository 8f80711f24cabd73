"""Queues: priority sub-queues, unacknowledged, oldest message age, consumers, and history."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from alerts.replicas import one
from console import metrics, ui
from console.sources.prometheus import range_frame

ctx = ui.page("Queues")
sel = metrics.exporter_selector(ctx.points)


def snapshot() -> pd.DataFrame:
    prom = ctx.prometheus
    by_queue = {
        "depth": metrics.per_queue(prom, "sum", "celery_queue_length", sel),
        "unacked": metrics.per_queue(prom, "sum", "fleetops_queue_unacked", sel),
        "oldest message age (s)": metrics.per_queue(
            prom, "max", "fleetops_queue_oldest_message_age_seconds", sel
        ),
        "consumers": metrics.per_queue(prom, "sum", "celery_active_consumer_count", sel),
    }
    priorities = prom.query(f"fleetops_queue_length_by_priority{{{sel}}}")
    rows = []
    for queue in sorted(set().union(*by_queue.values())):
        row: dict[str, object] = {"queue": queue}
        row.update({column: values.get(queue, 0.0) for column, values in by_queue.items()})
        row["band"] = ui.band(ctx.points.queue_depth.level_of(float(row["depth"])))  # type: ignore[arg-type]
        for sample in priorities:
            if sample.labels.get("queue_name") == queue:
                row[f"priority {sample.labels.get('priority')}"] = sample.value
        rows.append(row)
    return pd.DataFrame(rows)


frame = ui.fetch(snapshot)
if frame is not None:
    st.dataframe(frame, hide_index=True, width="stretch")
    hours = st.select_slider(
        "History", options=[1, 3, 6, 24], value=1, format_func=lambda h: f"{h} h"
    )
    depth_history = ui.fetch(
        lambda: range_frame(
            ctx.prometheus,
            f"sum by (queue_name) ({one(f'celery_queue_length{{{sel}}}')})",
            "queue_name",
            seconds=hours * 3600,
            step=max(15, hours * 3600 / 240),
        )
    )
    if depth_history is not None and not depth_history.empty:
        st.line_chart(depth_history)
