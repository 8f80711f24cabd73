"""Beat: each periodic task, its schedule, last and next run, missed runs."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from console import beat, ui

ctx = ui.page("Beat")
grace = ctx.points.objectives.beat_missed_after_intervals
st.caption(f"A run counts as missed once the task is {grace:g} intervals late.")
found = ui.fetch(lambda: beat.entries(ctx.prometheus, ctx.points))
if found is not None:
    if not found:
        st.info("No periodic task has been reported by the exporter yet.")
    else:

        def at(stamp: float) -> datetime:
            return datetime.fromtimestamp(stamp, UTC)

        frame = pd.DataFrame(
            [
                {
                    "periodic task": e.name,
                    "every (s)": e.interval,
                    "last run": at(e.last_run),
                    "next run": at(e.next_run),
                    "missed runs": e.missed,
                }
                for e in found
            ]
        )
        st.dataframe(frame, hide_index=True, width="stretch", key="beat")
        for entry in found:
            if entry.missed:
                link = ui.runbook_link("CeleryBeatMissedRun")
                st.error(f"{entry.name}: {entry.missed} runs missed. {link}")
