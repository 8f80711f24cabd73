"""Overview: every queue against its breaking points, workers, firing alerts. Auto-refreshes."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from console import metrics, ui

ctx = ui.page("Overview")
depth, latency = ctx.points.queue_depth, ctx.points.task_latency


def _minutes(seconds: float | None) -> float | None:
    if seconds is None or math.isnan(seconds):
        return None
    return round(seconds / 60, 1)


@st.fragment(run_every=ctx.settings.console_refresh_seconds)
def live() -> None:
    st.caption(
        f"Queue depth bands: warning ≥ {depth.warning:g}, critical ≥ {depth.critical:g}, "
        f"breaking ≥ {depth.breaking:g} {depth.unit}. Latency p95 bands: "
        f"{latency.warning / 60:g} / {latency.critical / 60:g} / {latency.breaking / 60:g} min."
    )
    queues = ui.fetch(lambda: metrics.queue_states(ctx.prometheus, ctx.points))
    if queues is not None:
        st.subheader("Queues")
        frame = pd.DataFrame(
            [
                {
                    "queue": q.queue,
                    "depth": q.depth,
                    "band": ui.band(q.band),
                    "arrival/s": round(q.arrival_rate, 3),
                    "completion/s": round(q.completion_rate, 3),
                    "time to drain": metrics.minutes_text(q.drain_seconds),
                    # Text like time to drain: a stalled queue reads "never at this rate",
                    # not "Infinity".
                    "new task waits": metrics.minutes_text(q.wait_seconds),
                    "p95 latency (min)": _minutes(q.p95_latency),
                    "latency band": ui.band(q.latency_band),
                    "consumers": q.consumers,
                }
                for q in queues
            ]
        )
        st.dataframe(frame, hide_index=True, width="stretch")
        # One block, not one element per queue: 50 queues must not mean 50 elements to send.
        waits = [
            f"- **{q.queue}**: the last task enqueued now waits about "
            f"**{metrics.minutes_text(q.wait_seconds)}** "
            f"({q.depth:g} ahead of it, {q.completion_rate:.2f} done/s)."
            for q in queues
            if q.depth > 0
        ]
        if waits:
            st.markdown("\n".join(waits))
    workers = ui.fetch(lambda: metrics.worker_states(ctx.prometheus, ctx.points))
    if workers is not None:
        st.subheader("Workers")
        up, down = st.columns(2)
        up.metric("Workers up", sum(w.up for w in workers))
        down.metric("Workers down", sum(not w.up for w in workers))
    alerts = ui.fetch(ctx.alertmanager.alerts)
    if alerts is not None:
        st.subheader("Firing alerts")
        active = [a for a in alerts if a.state == "active"]
        if not active:
            st.success("No alert is firing.")
        for alert in active:
            where = ", ".join(
                f"{k}={v}" for k, v in alert.labels.items() if k in ("queue_name", "hostname")
            )
            st.markdown(
                f"- **{alert.name}** ({alert.severity}) {where} {alert.summary} "
                f"{ui.runbook_link(alert.name)}"
            )


live()
