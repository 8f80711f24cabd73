"""Dead letters: browse the dead-letter queue, requeue (dry run first) or purge entries."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from console import actions, ui
from console.sources import control

ctx = ui.page("Dead letters")
letters = ui.fetch(lambda: control.dead_letters(ctx.celery))
if letters is not None:
    if not letters:
        st.success("The dead-letter queue is empty.")
    else:
        frame = pd.DataFrame(
            [
                {
                    "id": d.id, "task_id": d.task_id, "name": d.name, "queue": d.queue,
                    "exception": d.exception, "reason": d.reason, "retries": d.retries,
                    "failed_at": d.failed_at, "args": str(d.args), "kwargs": str(d.kwargs),
                }
                for d in letters
            ]
        )  # fmt: skip
        st.dataframe(frame, hide_index=True, width="stretch", key="letters")
        with st.expander("Inspect one entry"):
            chosen = st.selectbox("Entry", [d.id for d in letters], key="inspect")
            letter = next(d for d in letters if d.id == chosen)
            st.json({k: v for k, v in letter.__dict__.items() if k != "traceback"})
            st.code(letter.traceback or "(no traceback)")

        st.subheader("Requeue or purge")
        first, second, third = st.columns(3)
        ids = first.text_input("Entry or task ids (comma separated)", key="dl_ids")
        name = second.text_input("Task name", key="dl_name")
        exception = third.text_input("Exception", key="dl_exception")
        wanted = [part.strip() for part in ids.split(",") if part.strip()]
        select = control.selector(wanted, name or None, exception or None)
        # A dry run only reads: anyone may see what an action would touch.
        if st.button("Dry run", key="dl_dry_run"):
            touched = ui.fetch(lambda: control.requeue(ctx.celery, select, dry_run=True))
            if touched is not None:
                listed = ", ".join(d.id for d in touched[:20])
                st.info(f"Dry run: {len(touched)} entries would be requeued: {listed}")
        scope = f"ids={wanted or 'any'} name={name or 'any'} exception={exception or 'any'}"
        for verb, act in (("requeue", control.requeue), ("purge", control.purge)):
            actions.guarded(
                ctx.settings,
                key=verb,
                label=verb.title(),
                what=f"{verb} dead letters matching {scope}",
                run=lambda act=act, verb=verb: (
                    f"{len(act(ctx.celery, select, dry_run=False))} {verb}d"
                ),
            )
