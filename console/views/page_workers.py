"""Workers: memory against its breaking points, heartbeat age, work done, pool; control actions."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pandas as pd
import streamlit as st

from console import actions, charts, links, metrics, trouble, ui
from console.sources import control
from console.sources.prometheus import Prometheus, range_frame

ctx = ui.page("Workers")
memory = ctx.points.worker_memory
st.caption(
    f"Memory bands: warning ≥ {memory.warning:g}%, critical ≥ {memory.critical:g}%, "
    f"breaking ≥ {memory.breaking:g}% of the worker's limit."
)
ACTIONS = ["Pool grow / shrink", "Autoscale", "Add consumer", "Cancel consumer", "Shutdown"]


def on_broker(call: Callable[..., object], *args: object) -> object:
    # The chosen app's broker, resolved when the action runs (the page renders without one).
    return call(ctx.celery, *args)


def choose(host: str, choice: str) -> tuple[str, Callable[[], object]] | None:
    """What the chosen action will do, in words, and the call that does it."""
    if choice == "Pool grow / shrink":
        delta = int(st.number_input("Processes to add (negative: remove)", -8, 8, 1, key="delta"))
        if not delta:
            return None
        verb = "grow" if delta > 0 else "shrink"
        return f"pool {verb} {host} by {abs(delta)}", partial(
            on_broker, control.pool_resize, host, delta
        )
    if choice == "Autoscale":
        high = int(st.number_input("Maximum processes", 1, 64, 4, key="autoscale_max"))
        low = int(st.number_input("Minimum processes", 0, 64, 1, key="autoscale_min"))
        return f"autoscale {host} to {low}..{high}", partial(
            on_broker, control.autoscale, host, high, low
        )
    if choice in ("Add consumer", "Cancel consumer"):
        queue = st.text_input("Queue", key="consumer_queue").strip()
        if not queue:
            return None
        if choice == "Add consumer":
            return f"add consumer of {queue} on {host}", partial(
                on_broker, control.add_consumer, host, queue
            )
        return f"cancel consumer of {queue} on {host}", partial(
            on_broker, control.cancel_consumer, host, queue
        )
    return f"shut down {host} (warm: running tasks finish)", partial(
        on_broker, control.shutdown, host
    )


def act(host: str) -> None:
    choice = st.selectbox("Action", ACTIONS, key="worker_action")
    chosen = choose(host, choice)
    if chosen is None:
        return
    what, call = chosen
    actions.guarded(
        ctx.settings,
        app=ctx.apps,
        key="worker",
        label=choice,
        what=what,
        run=lambda: str(call() or "sent"),
        details={"worker": host},
    )


def focus_name() -> str | None:
    """The worker named in the URL, or None. A URL is anyone's text: checked as every page
    checks its parameters (console/links.py), and only ever compared with the known names."""
    asked, problems = links.checked(st.query_params, (links.WORKER,))
    for problem in problems:
        st.warning(problem)
    return asked.get(links.WORKER)


def focus(w: metrics.WorkerState) -> None:
    # A worker of a row of several apps reads and links its own app only (links.app_of).
    with links.app_of(w.app):
        focus_of_app(w, ctx.prometheus.for_app(w.app) if w.app else ctx.prometheus)


def focus_of_app(w: metrics.WorkerState, prom: Prometheus) -> None:
    host = w.hostname
    of_app = "" if w.app is None else f" of app {trouble.plain(w.app)}"
    st.subheader(f"Worker {trouble.plain(host)}{of_app}")
    st.markdown(
        " · ".join(
            [
                links.markdown("its tasks", links.tasks(worker=host)),
                links.markdown("its failed tasks", links.tasks(worker=host, state="FAILURE")),
            ]
        )
    )
    cols = st.columns(4)
    cols[0].metric("State", "up" if w.up else "down")
    mem = charts.finite(w.memory_percent)
    cols[1].metric("Memory", "n/a" if mem is None else f"{mem:.1f} % ({ui.band(w.memory_band)})")
    age = charts.finite(w.heartbeat_age)
    cols[2].metric("Last heartbeat", "n/a" if age is None else f"{age:.0f} s ago")
    cols[3].metric(
        "Active / pool", f"{w.active:g} / {'n/a' if w.pool_size is None else f'{w.pool_size:g}'}"
    )
    history = ui.fetch(
        lambda: range_frame(
            prom,
            metrics.memory_expr(ctx.points, prom.app),
            "hostname",
            seconds=3600,
            step=15,
        )
    )
    if history is not None:
        frame = charts.history_frame(history, [host])
        if not frame.empty:
            ui.chart(
                charts.history_chart(
                    frame, memory_bands, key="worker_memory_history", value_title="%"
                ),
                key="worker_focus_memory",
                description=f"Memory of {host} over the last hour against the memory bands.",
            )
    received = ui.fetch(lambda: metrics.received_by_queue_and_worker(prom, ctx.points))
    if received is not None:
        queues = {q: by_host[host] for q, by_host in received.items() if host in by_host}
        st.markdown(f"**Queues it took tasks from in the last {metrics.RECENT_WINDOW}**")
        if not queues:
            st.info("None lately.")
        else:
            st.markdown(
                "\n".join(
                    f"- {links.markdown(q, links.queue(q))}: {n:,.0f} tasks "
                    f"({links.markdown('tasks', links.tasks(queue=q, worker=host))})"
                    for q, n in sorted(queues.items(), key=lambda kv: -kv[1])
                )
            )


def _links_of(w: metrics.WorkerState) -> dict[str, str]:
    # A row of another app (several apps shown at once) opens that app.
    with links.app_of(w.app):
        return {"open": links.worker(w.hostname), "tasks": links.tasks(worker=w.hostname)}


memory_bands = charts.signal_bands(memory)
workers = ui.fetch(lambda: metrics.worker_states(ctx.prometheus, ctx.points, per_app=ctx.per_app))
if workers is not None:
    name = focus_name()
    if name is not None:
        # Several apps shown: a name several apps run is several workers; none is picked.
        match metrics.workers_named(workers, name):
            case [one]:
                focus(one)
                st.divider()
            case []:
                st.warning(f"No worker named {trouble.plain(name)} is known: showing every worker.")
            case several:
                st.warning(
                    f"Apps {', '.join(trouble.plain(str(w.app)) for w in several)} each run a "
                    f"worker named {trouble.plain(name)}: open one from its row to focus on it."
                )
    bars = charts.memory_frame(workers, ctx.points)
    if not bars.empty:
        st.subheader("Memory")
        ui.chart(
            charts.bars_chart(bars, memory_bands, key="memory", value_title="% of its limit"),
            key="workers_memory",
            description="Memory of every worker, percent of its limit, against the memory bands.",
        )
    st.subheader("Every worker")
    frame = pd.DataFrame(
        [
            {
                **({"app": w.app} if ctx.per_app else {}),
                "worker": w.hostname,
                "up": w.up,
                "memory %": None if w.memory_percent is None else round(w.memory_percent, 1),
                "memory band": ui.band(w.memory_band),
                "heartbeat age (s)": None if w.heartbeat_age is None else round(w.heartbeat_age, 1),
                "active": w.active,
                "processed": w.processed,
                "pool": w.pool_size,
                **_links_of(w),
            }
            for w in workers
        ]
    )
    st.dataframe(
        frame,
        hide_index=True,
        width="stretch",
        column_config={
            "open": st.column_config.LinkColumn("open", display_text="focus"),
            "tasks": st.column_config.LinkColumn("tasks", display_text="its tasks"),
        },
    )
    st.subheader("Act on a worker")
    hosts = [w.hostname for w in workers if w.up]
    if hosts:
        # The worker in focus is the one to act on.
        chosen = hosts.index(name) if name in hosts else 0
        act(st.selectbox("Worker", hosts, index=chosen, key="pool_worker"))
    else:
        st.info("No worker is up.")
