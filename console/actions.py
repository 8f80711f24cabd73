"""Control actions: an operator, a confirmation of exactly this action on this target, and
an audit entry before (intent) and after (result).

The confirmation is armed with the ``what`` text it was ticked next to ("shut down worker-a").
When the page renders the same action key with another ``what`` (another worker, task, queue,
number or selection), the confirmation is void and shows unticked; it is voided again after
the action ran, successfully or not. The widget keys stay ``<key>_confirm`` and ``<key>_run``
so a page's layout and tests keep their names; the binding lives in session state.

The action runs in the button's callback, with the ``run`` and ``what`` of the page run the
person saw when they clicked, never with values of a later rerun."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from console import audit, auth
from console.settings import ConsoleSettings


@dataclass(frozen=True)
class Outcome:
    """What an action returns when it has more to audit than its result text (e.g. the ids
    of the entries it touched)."""

    text: str
    details: Mapping[str, Any] = field(default_factory=dict)


class Failed(Exception):
    """An action that failed with more to audit than its error (e.g. the ids of the entries it
    touched before it stopped): its result is ``failed: <message>`` plus ``details``."""

    def __init__(self, message: str, details: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.details = dict(details)


def _keys(key: str) -> tuple[str, str, str, str]:
    return f"{key}_confirm", f"{key}_run", f"{key}_armed", f"{key}_outcome"


def _arm(key: str, what: str) -> None:
    confirm, _run, armed, _outcome = _keys(key)
    if st.session_state.get(confirm):
        st.session_state[armed] = what
    else:
        st.session_state.pop(armed, None)


def _disarm(key: str) -> None:
    confirm, _run, armed, _outcome = _keys(key)
    st.session_state[confirm] = False
    st.session_state.pop(armed, None)


def is_armed(key: str, what: str) -> bool:
    """Ticked, and ticked for this very ``what``."""
    confirm, _run, armed, _outcome = _keys(key)
    return bool(st.session_state.get(confirm)) and st.session_state.get(armed) == what


def _execute(
    settings: ConsoleSettings,
    key: str,
    what: str,
    run: Callable[[], object],
    details: Mapping[str, Any],
) -> None:
    """The button's callback: check everything again, then intent, run, result."""
    outcome_key = _keys(key)[3]
    # Checked again here: a disabled widget is presentation, not access control.
    identity = auth.current(settings)
    reason = auth.refusal(identity)
    if reason is not None or identity is None:
        st.session_state[outcome_key] = ("error", f"{reason} Nothing was done.")
        return
    if not is_armed(key, what):
        _disarm(key)
        st.session_state[outcome_key] = (
            "warning",
            f"Tick the confirmation for {what!r} first: nothing was done.",
        )
        return
    # One confirmation, one run: disarmed before running, so neither a failure nor a second
    # click can reuse it.
    _disarm(key)
    details = {"via": identity.via, **details}
    try:
        action_id = audit.intent(settings.audit_log, who=identity.who, what=what, **details)
    except OSError as exc:
        # No action without its audit entry.
        st.session_state[outcome_key] = (
            "error",
            f"The audit log {settings.audit_log} cannot be written ({exc}): nothing was done.",
        )
        return
    try:
        produced = run()
    except Failed as exc:
        text, extra, kind = f"failed: {exc}", {**details, **exc.details}, "error"
    except Exception as exc:
        text, extra, kind = f"failed: {type(exc).__name__}: {exc}", details, "error"
    else:
        kind = "success"
        if isinstance(produced, Outcome):
            text, extra = produced.text, {**details, **produced.details}
        else:
            text, extra = str(produced), details
    message = f"{what}: {text}"
    try:
        audit.outcome(
            settings.audit_log, action_id, who=identity.who, what=what, result=text, **extra
        )
    except OSError as exc:
        kind = "error"
        message += f" (but its result could not be written to the audit log: {exc})"
    st.session_state[outcome_key] = (kind, message, text) if kind == "success" else (kind, message)


def guarded(
    settings: ConsoleSettings,
    *,
    key: str,
    label: str,
    what: str,
    run: Callable[[], object],
    details: dict | None = None,
) -> str | None:
    """Render the confirmation and button of one action; run it only when allowed.

    ``run`` returns the result text (or an Outcome). Returns the result text in the page run
    right after the action ran, else None."""
    confirm, run_key, armed, outcome_key = _keys(key)
    # Before the checkbox exists in this run: a confirmation given for another target is void.
    if st.session_state.get(armed) != what:
        _disarm(key)
    identity = auth.current(settings)
    reason = auth.refusal(identity)
    confirmed = st.checkbox(
        f"I confirm: {what}",
        key=confirm,
        disabled=reason is not None,
        on_change=_arm,
        args=(key, what),
    )
    st.button(
        label,
        key=run_key,
        disabled=reason is not None or not confirmed,
        on_click=_execute,
        args=(settings, key, what, run, dict(details or {})),
    )
    if reason is not None:
        st.caption(reason)
    shown = st.session_state.pop(outcome_key, None)
    if not shown:
        return None
    kind, message, *result = shown
    {"error": st.error, "warning": st.warning, "success": st.success}[kind](message)
    return result[0] if result else None
