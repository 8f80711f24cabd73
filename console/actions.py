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
from console.apps import AppChoice
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


OUTCOMES_KEY = "fleetops_action_outcomes"


def _keys(key: str) -> tuple[str, str, str]:
    return f"{key}_confirm", f"{key}_run", f"{key}_armed"


def _tell(kind: str, message: str) -> None:
    # Kept until the next page run shows it (show_outcomes), whatever that run renders.
    st.session_state.setdefault(OUTCOMES_KEY, []).append((kind, message))


def show_outcomes() -> None:
    """Show, once, what every action that ran since the last page run came to.

    At the top of the page, not next to the action's button: the action may have removed what
    the page would render the button for (after "purge ALL" the dead-letter page says the
    queue is empty and offers no purge), and its result must still be seen now, not in some
    later run that happens to render that action again."""
    for kind, message in st.session_state.pop(OUTCOMES_KEY, None) or []:
        {"error": st.error, "warning": st.warning, "success": st.success}[kind](message)


def _arm(key: str, what: str) -> None:
    confirm, _run, armed = _keys(key)
    if st.session_state.get(confirm):
        st.session_state[armed] = what
    else:
        st.session_state.pop(armed, None)


def _disarm(key: str) -> None:
    confirm, _run, armed = _keys(key)
    st.session_state[confirm] = False
    st.session_state.pop(armed, None)


def is_armed(key: str, what: str) -> bool:
    """Ticked, and ticked for this very ``what``."""
    confirm, _run, armed = _keys(key)
    return bool(st.session_state.get(confirm)) and st.session_state.get(armed) == what


def _refusal(app: AppChoice | None, owner: str | None = None) -> str | None:
    """Why an action on a broker cannot run for the app chosen (several apps, none chosen), or
    on a target of another app (``owner``: the app the target belongs to, e.g. a task's row)."""
    if app is None:
        return None
    reason = app.refusal()
    if reason is not None or owner is None:
        return reason
    acting = app.acting
    if acting is not None and acting.name != owner:
        return (
            f"This belongs to app {owner!r}, not to {acting.name!r} whose broker the console"
            f" acts on: choose {owner!r} (sidebar) to act on it."
        )
    return None


def _app_details(app: AppChoice | None) -> dict[str, Any]:
    # The audit names the app whose broker the action went to.
    acting = None if app is None else app.acting
    return {} if acting is None else {"app": acting.name}


def _execute(
    settings: ConsoleSettings,
    key: str,
    what: str,
    run: Callable[[], object],
    details: Mapping[str, Any],
    app: AppChoice | None = None,
    owner: str | None = None,
) -> None:
    """The button's callback: check everything again, then intent, run, result."""
    # Checked again here: a disabled widget is presentation, not access control.
    identity = auth.current(settings)
    reason = auth.refusal(identity) or _refusal(app, owner)
    if reason is not None or identity is None:
        _tell("error", f"{reason} Nothing was done.")
        return
    if not is_armed(key, what):
        _disarm(key)
        _tell("warning", f"Tick the confirmation for {what!r} first: nothing was done.")
        return
    # One confirmation, one run: disarmed before running, so neither a failure nor a second
    # click can reuse it.
    _disarm(key)
    owned = {} if owner is None else {"target_app": owner}
    details = {"via": identity.via, **_app_details(app), **owned, **details}
    try:
        action_id = audit.intent(settings.audit_log, who=identity.who, what=what, **details)
    except OSError as exc:
        # No action without its audit entry.
        _tell(
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
    _tell(kind, message)


def named(what: str, app: AppChoice | None) -> str:
    """The action's text with the app it acts on, when there are apps to choose from.

    The confirmation is armed with this text: ticked for "purge dead letters: ALL" with app A
    chosen, it must not purge B's after a switch in the sidebar, so the app is part of it.
    With one app there is nothing to mix up and the text stays as it was."""
    acting = None if app is None or not app.several else app.acting
    return what if acting is None else f"{what} (app {acting.name})"


def guarded(
    settings: ConsoleSettings,
    *,
    key: str,
    label: str,
    what: str,
    run: Callable[[], object],
    app: AppChoice | None,
    details: dict | None = None,
    owner: str | None = None,
) -> None:
    """Render the confirmation and button of one action; run it only when allowed.

    ``run`` returns the result text (or an Outcome); show_outcomes (every page calls it
    through ui.page) shows it in the next page run. ``app`` is the page's app choice for an
    action on a broker (refused unless it names one app whose broker is known), None for one
    that is not (a silence): every caller says which. ``owner`` is the app the target
    belongs to when the console knows it (a task's row in the history): the action is refused
    unless that is the app acted on, and the audit records it as ``target_app``."""
    what = named(what, app)
    confirm, run_key, armed = _keys(key)
    # Before the checkbox exists in this run: a confirmation given for another target is void.
    if st.session_state.get(armed) != what:
        _disarm(key)
    identity = auth.current(settings)
    reason = auth.refusal(identity) or _refusal(app, owner)
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
        args=(settings, key, what, run, dict(details or {}), app, owner),
    )
    if reason is not None:
        st.caption(reason)
