"""Dead letters: browse the dead-letter queue, requeue (dry run first) or purge entries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial

import pandas as pd
import streamlit as st

from console import actions, ui
from console.sources import control
from workers import deadletter

SHOWN_IDS = 50

ctx = ui.page("Dead letters")


def _touched(letters: list[deadletter.DeadLetter]) -> dict[str, list[str]]:
    # The audit names every entry touched: an entry id is how a purge is traced afterwards.
    return {"entry_ids": [d.id for d in letters], "task_ids": [d.task_id for d in letters]}


def _batch(
    act: Callable[..., list[deadletter.DeadLetter]], verb: str, selection: control.Selection
) -> actions.Outcome:
    try:
        touched = act(ctx.celery, selection, dry_run=False)
    except deadletter.PartialBatch as exc:
        # Stopped part-way: the entries done before the failure are gone from the queue, so
        # the failure's audit entry must still name them.
        raise actions.Failed(
            f"{type(exc.cause).__name__}: {exc.cause} ({len(exc.taken)} {verb}d before it"
            " stopped; the rest are still in the queue)",
            _touched(exc.taken),
        ) from exc
    return actions.Outcome(f"{len(touched)} {verb}d", _touched(touched))


if ctx.apps.acting is None:
    # Dead letters are in one broker: with several apps, the chosen app's.
    st.info(ctx.apps.refusal() or "Choose one app.")
    st.stop()
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
        try:
            selection = control.Selection.parse(ids, name, exception, everything=False)
        except control.NoSelection as exc:
            st.error(f"{exc}: nothing selected.")
            selection = None
        if selection is not None and not selection.filtered:
            # No filter means every entry: that has to be said, never the default.
            everything = st.checkbox(
                "No filter: select ALL entries of the dead-letter queue", key="dl_all"
            )
            selection = replace(selection, everything=everything)
        chosen = selection is not None and (selection.filtered or selection.everything)
        # A dry run only reads: anyone may see what an action would touch.
        dry_run = st.button("Dry run", key="dl_dry_run")
        if selection is None or not chosen:
            st.info("Give entry or task ids, a task name or an exception (or choose ALL).")
        else:
            if dry_run:
                touched = ui.fetch(lambda: control.requeue(ctx.celery, selection, dry_run=True))
                if touched is not None:
                    listed = ", ".join(d.id for d in touched[:SHOWN_IDS])
                    hidden = len(touched) - SHOWN_IDS
                    more = f" and {hidden} more" if hidden > 0 else ""
                    st.info(
                        f"Dry run: {len(touched)} entries would be requeued or purged: "
                        f"{listed}{more}"
                    )
            for verb, act in (("requeue", control.requeue), ("purge", control.purge)):
                actions.guarded(
                    ctx.settings,
                    app=ctx.apps,
                    key=verb,
                    label=verb.title(),
                    what=f"{verb} dead letters: {selection.describe()}",
                    run=partial(_batch, act, verb, selection),
                    details=selection.audit(),
                )
