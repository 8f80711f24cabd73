"""Workers: memory against its breaking points, heartbeat age, work done, pool; control actions."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pandas as pd
import streamlit as st

from console import actions, metrics, ui
from console.sources import control

ctx = ui.page("Workers")
memory = ctx.points.worker_memory
st.caption(
    f"Memory bands: warning ≥ {memory.warning:g}%, critical ≥ {memory.critical:g}%, "
    f"breaking ≥ {memory.breaking:g}% of the worker's limit."
)
ACTIONS = ["Pool grow / shrink", "Autoscale", "Add consumer", "Cancel consumer", "Shutdown"]


def choose(host: str, choice: str) -> tuple[str, Callable[[], object]] | None:
    """What the chosen action will do, in words, and the call that does it."""
    app = ctx.celery
    if choice == "Pool grow / shrink":
        delta = int(st.number_input("Processes to add (negative: remove)", -8, 8, 1, key="delta"))
        if not delta:
            return None
        verb = "grow" if delta > 0 else "shrink"
        return f"pool {verb} {host} by {abs(delta)}", partial(control.pool_resize, app, host, delta)
    if choice == "Autoscale":
        high = int(st.number_input("Maximum processes", 1, 64, 4, key="autoscale_max"))
        low = int(st.number_input("Minimum processes", 0, 64, 1, key="autoscale_min"))
        return f"autoscale {host} to {low}..{high}", partial(
            control.autoscale, app, host, high, low
        )
    if choice in ("Add consumer", "Cancel consumer"):
        queue = st.text_input("Queue", key="consumer_queue").strip()
        if not queue:
            return None
        if choice == "Add consumer":
            return f"add consumer of {queue} on {host}", partial(
                control.add_consumer, app, host, queue
            )
        return f"cancel consumer of {queue} on {host}", partial(
            control.cancel_consumer, app, host, queue
        )
    return f"shut down {host} (warm: running tasks finish)", partial(control.shutdown, app, host)


def act(host: str) -> None:
    choice = st.selectbox("Action", ACTIONS, key="worker_action")
    chosen = choose(host, choice)
    if chosen is None:
        return
    what, call = chosen
    actions.guarded(
        ctx.settings,
        key="worker",
        label=choice,
        what=what,
        run=lambda: str(call() or "sent"),
        details={"worker": host},
    )


workers = ui.fetch(lambda: metrics.worker_states(ctx.prometheus, ctx.points))
if workers is not None:
    frame = pd.DataFrame(
        [
            {
                "worker": w.hostname,
                "up": w.up,
                "memory %": None if w.memory_percent is None else round(w.memory_percent, 1),
                "memory band": ui.band(w.memory_band),
                "heartbeat age (s)": None if w.heartbeat_age is None else round(w.heartbeat_age, 1),
                "active": w.active,
                "processed": w.processed,
                "pool": w.pool_size,
            }
            for w in workers
        ]
    )
    st.dataframe(frame, hide_index=True, width="stretch")
    st.subheader("Act on a worker")
    hosts = [w.hostname for w in workers if w.up]
    if hosts:
        act(st.selectbox("Worker", hosts, key="pool_worker"))
    else:
        st.info("No worker is up.")
