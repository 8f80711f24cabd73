"""Failures: failed tasks grouped by task and exception, with counts and first/last seen."""

from __future__ import annotations

import streamlit as st

from console import ui
from console.sources import history

ctx = ui.page("Failures")
WINDOWS = ["1h", "6h", history.RECENT_WINDOW, "7d", "30d"]
window = st.selectbox("Over the last", WINDOWS, index=2, key="window")
grouped = ui.fetch(lambda: history.call(ctx.history, history.failures, since=window, limit=500))
if grouped is not None:
    if grouped.empty:
        st.success(f"No failure in the last {window}.")
    else:
        st.caption(f"{int(grouped['count'].sum()):,} failures in {len(grouped)} groups.")
        st.dataframe(grouped, hide_index=True, width="stretch", key="failures")
        st.caption("Open an example in Tasks: paste its id into Task detail.")
