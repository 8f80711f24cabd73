"""Control actions: an authenticated operator, an explicit confirmation, an audit entry."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from console import audit, auth
from console.settings import ConsoleSettings


def guarded(
    settings: ConsoleSettings,
    *,
    key: str,
    label: str,
    what: str,
    run: Callable[[], str],
    details: dict | None = None,
) -> str | None:
    """Render the confirmation and button of one action; run it only when allowed.

    Returns the action's result text when it ran."""
    who = auth.operator()
    confirmed = st.checkbox(f"I confirm: {what}", key=f"{key}_confirm", disabled=who is None)
    clicked = st.button(label, key=f"{key}_run", disabled=who is None or not confirmed)
    if who is None:
        st.caption("Read-only: log in as an operator (sidebar) to act.")
    if not clicked:
        return None
    # Checked again here: a disabled widget is presentation, not access control.
    if who is None:
        st.error("Not logged in: nothing was done.")
        return None
    if not confirmed:
        st.warning("Tick the confirmation first: nothing was done.")
        return None
    try:
        result = run()
    except Exception as exc:
        failed = f"failed: {exc}"
        audit.append(settings.audit_log, who=who, what=what, result=failed, **(details or {}))
        st.error(f"{what}: failed: {exc}")
        return None
    audit.append(settings.audit_log, who=who, what=what, result=result, **(details or {}))
    st.success(f"{what}: {result}")
    return result
