"""Beat: every entry of the schedule, worst first: next expected run, last run, lateness, missed
runs. Entries are known from Beat's schedule announcements, before their first run."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from console import beat, links, trouble, ui

ctx = ui.page("Beat")
grace = ctx.points.objectives.beat_missed_after_intervals
st.caption(
    "Every entry of Beat's schedule, worst first. A run counts as missed once the task is"
    f" {grace:g} intervals late (counted from its last run)."
)
found = ui.fetch(lambda: beat.entries(ctx.prometheus, ctx.points))
if found is not None:
    if not found:
        st.info(
            "The exporter has no Beat schedule yet. Beat announces it when it starts and then"
            " twice a minute: is Beat running, with `workers.beat:ReportingScheduler`?"
        )
    else:
        now = time.time()
        for entry in found:
            if entry.missed:
                # Without a known task there is nothing to search for: the name stays text.
                task = (
                    links.markdown(entry.name, links.tasks(name=entry.task))
                    if entry.task
                    else trouble.plain(entry.name)
                )
                st.error(
                    f"{task}: {entry.missed} runs missed, {beat.due_text(entry, now)}."
                    f" {ui.runbook_link('CeleryBeatMissedRun')}"
                )
        frame = pd.DataFrame(
            [
                {
                    "periodic task": e.name,
                    "task": links.tasks(name=e.task) if e.task else None,
                    "every (s)": e.interval,
                    "next run": beat.when_text(e.next_run, "unknown"),
                    "due": beat.due_text(e, now),
                    "last run": beat.when_text(e.last_run, "never yet"),
                    "late (s)": round(e.late, 1),
                    "missed runs": e.missed,
                }
                for e in found
            ]
        )
        st.dataframe(
            frame,
            hide_index=True,
            width="stretch",
            key="beat",
            column_config={
                # The task's runs on the Tasks page; the link shows the task's name.
                "task": st.column_config.LinkColumn("task", display_text=r"name=([^&]*)"),
            },
        )
