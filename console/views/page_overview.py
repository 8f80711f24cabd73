"""Overview: what is in trouble first, worst first; then every queue and worker drawn against
its breaking points; the detail table and the firing alerts below. Auto-refreshes."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from alerts.recording import LATENCY_WINDOW
from console import charts, links, metrics, trouble, ui

ctx = ui.page("Overview")
points = ctx.points


def _minutes(seconds: float | None) -> float | None:
    if seconds is None or math.isnan(seconds):
        return None
    return round(seconds / 60, 1)


def read_prometheus() -> tuple[list[metrics.QueueState], list[metrics.WorkerState], dict]:
    # One fetch for the three: a Prometheus that is down shows one banner, not three.
    return (
        metrics.queue_states(ctx.prometheus, points, per_app=ctx.per_app),
        metrics.worker_states(ctx.prometheus, points, per_app=ctx.per_app),
        metrics.failure_ratios(ctx.prometheus, per_app=ctx.per_app),
    )


def in_trouble(queues: list, workers: list, alerts: list, complete: bool) -> None:
    st.subheader("In trouble, worst first")
    found = trouble.troubles(queues, workers, alerts, points, per_app=ctx.per_app)
    if found:
        # One block, not one element per line: 50 queues must not mean 50 elements to send.
        st.markdown("\n".join(t.markdown() for t in found))
    elif complete:
        st.success("Nothing is in trouble: every queue and worker is safe, no alert is firing.")
    else:
        st.info("Nothing in trouble in the sources that answered (see the banner above).")


def queue_charts(
    queues: list[metrics.QueueState], ratios: dict[tuple[str | None, str], float]
) -> None:
    depth = charts.depth_frame(queues, points)
    st.subheader("Queue depth")
    if depth.empty:
        st.info("No queue is known to Prometheus yet.")
    else:
        bands = charts.signal_bands(points.queue_depth)
        st.caption(ui.bands_text(bands) + " A log scale: a queue of 4 stays visible.")
        ui.chart(
            charts.bars_chart(depth, bands, key="depth", value_title="messages", log=True),
            key="overview_depth",
            description="Current depth of every queue, deepest first, against the depth bands.",
        )
        if len(queues) > len(depth):
            st.caption(f"The {len(depth)} deepest of {len(queues)} queues.")

    st.subheader("Arrival and completion")
    flow = charts.flow_frame(queues)
    if flow.empty:
        st.info("No task arrived or finished in the last minute.")
    else:
        st.caption("A queue whose arrival bar is longer than its completion bar is growing.")
        ui.chart(
            charts.flow_chart(flow, key="flow"),
            key="overview_flow",
            description="Arrival and completion rate per queue, the fastest-growing first.",
        )

    st.subheader("Time to drain")
    waits = charts.wait_frame(queues, points)
    if waits.empty:
        st.success("No queue has a backlog: a task enqueued now starts at once.")
    else:
        ui.chart(
            charts.wait_chart(waits, charts.latency_bands(points), key="wait"),
            key="overview_wait",
            description="How long a task enqueued now waits, per queue, against the latency bands.",
        )
        by_name = {charts.shown_name(q.queue, q.app): q for q in queues}
        lines = []
        for name, url in zip(waits["name"], waits["link"], strict=True):
            q = by_name[name]
            lines.append(
                f"- {links.markdown(name, url)}: the last task enqueued now waits "
                f"about **{metrics.minutes_text(q.wait_seconds)}** ({q.depth:g} ahead of it, "
                f"{q.completion_rate:.2f} done/s; "
                f"time to drain: {metrics.minutes_text(q.drain_seconds)})."
            )
        st.markdown("\n".join(lines))

    st.subheader("Task latency (p95)")
    latency = charts.latency_frame(queues, points)
    if latency.empty:
        st.info(f"No task finished in the last {LATENCY_WINDOW}: no latency to show.")
    else:
        ui.chart(
            charts.bars_chart(
                latency, charts.latency_bands(points), key="latency", value_title="minutes"
            ),
            key="overview_latency",
            description="p95 end-to-end latency per queue against the latency bands.",
        )

    st.subheader(f"Failure ratio (last {metrics.FAILURE_WINDOW})")
    failures = charts.failure_frame(ratios, points)
    budget = points.objectives.error_budget * 100
    st.caption(
        f"Objective: {points.objectives.task_success_ratio:.3%} of tasks succeed, an error "
        f"budget of {budget:g} %. Bands: the burn rates at which the alerts open a ticket "
        "and page."
    )
    if failures.empty:
        st.info(f"No queue completed a task in the last {metrics.FAILURE_WINDOW}.")
    else:
        ui.chart(
            charts.bars_chart(
                failures, charts.failure_bands(points), key="failures", value_title="% failed"
            ),
            key="overview_failures",
            description="Failed per completed task per queue against the objective.",
        )


def worker_charts(workers: list[metrics.WorkerState]) -> None:
    st.subheader("Workers")
    up, down = st.columns(2)
    up.metric("Workers up", sum(w.up for w in workers))
    down.metric("Workers down", sum(not w.up for w in workers))
    memory = charts.memory_frame(workers, points)
    if not memory.empty:
        ui.chart(
            charts.bars_chart(
                memory, charts.signal_bands(points.worker_memory), key="memory", value_title="%"
            ),
            key="overview_memory",
            description="Memory of every worker, percent of its limit, against the memory bands.",
        )


def queue_table(queues: list[metrics.QueueState]) -> None:
    st.subheader("Queues in detail")
    frame = pd.DataFrame(
        [
            {
                **({"app": q.app} if ctx.per_app else {}),
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
                "open": charts.own_link(links.queue, q.queue, q.app),
            }
            for q in queues
        ]
    )
    st.dataframe(
        frame,
        hide_index=True,
        width="stretch",
        column_config={"open": st.column_config.LinkColumn("open", display_text="queue page")},
    )


def firing_alerts(alerts: list) -> None:
    st.subheader("Firing alerts")
    active = [a for a in alerts if a.state == "active"]
    if not active:
        st.success("No alert is firing.")
    lines = []
    for alert in active:
        where = ", ".join(
            f"{k}={v}" for k, v in alert.labels.items() if k in ("queue_name", "hostname")
        )
        lines.append(
            f"- **{alert.name}** ({alert.severity}) {where} {alert.summary} "
            f"{ui.runbook_link(alert.name)}"
        )
    if lines:
        st.markdown("\n".join(lines))


@st.fragment(run_every=ctx.settings.console_refresh_seconds)
def live() -> None:
    found = ui.fetch(read_prometheus)
    alerts = ui.fetch(ctx.alerts)
    queues, workers, ratios = found if found is not None else ([], [], {})
    in_trouble(queues, workers, alerts or [], complete=found is not None and alerts is not None)
    if found is not None:
        queue_charts(queues, ratios)
        worker_charts(workers)
        queue_table(queues)
    if alerts is not None:
        firing_alerts(alerts)


live()
