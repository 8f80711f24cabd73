"""Who is at the console and what they may do.

Two ways in, never both:
- OIDC (Streamlit's ``st.login``) when an ``[auth]`` section is in Streamlit's secrets. The
  identity is the provider's (its ``email`` claim, else ``sub``); the role is ours: operator when
  the verified email (``email_verified`` true) or the subject is in FLEETOPS_CONSOLE_OPERATORS
  or the claim FLEETOPS_CONSOLE_ROLE_CLAIM holds FLEETOPS_CONSOLE_OPERATOR_ROLE, else viewer.
- Otherwise the local password (a laptop): whoever knows it is the operator
  ``local:<FLEETOPS_CONSOLE_LOCAL_OPERATOR or the OS user that started the console>``. A name
  typed at login would be an unchecked claim, so none is asked for.

Without a login the console is read-only, as it is for viewers."""

from __future__ import annotations

import getpass
import hmac
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import streamlit as st

from console import audit
from console.settings import ConsoleSettings, load

log = logging.getLogger(__name__)

SESSION_KEY = "fleetops_operator"
FAILED_KEY = "fleetops_failed_logins"
OPERATOR: Literal["operator"] = "operator"
VIEWER: Literal["viewer"] = "viewer"
Role = Literal["operator", "viewer"]


@dataclass(frozen=True)
class Identity:
    who: str
    """As the audit log writes it: the provider's email or subject, or local:<name>."""
    role: Role
    via: Literal["oidc", "password"]

    @property
    def may_act(self) -> bool:
        return self.role == OPERATOR


def oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no or a malformed secrets file: OIDC is simply not there
        return False


def _claim_values(value: object) -> set[str]:
    # Providers send a role as a string, a list of strings, or a space-separated scope string.
    if isinstance(value, str):
        return set(value.split())
    if isinstance(value, list | tuple | set):
        return {item for item in value if isinstance(item, str)}
    return set()


def role_from_claims(claims: Mapping[str, object], settings: ConsoleSettings) -> Role:
    """Operator by the allow-list or by the role claim; everybody else signed in only reads."""
    allowed = {entry.casefold() for entry in settings.console_operators}
    # An email the provider has not verified is whatever the user typed at the provider (many
    # let anyone sign up with any address): it names nobody, so only a verified one matches.
    # The subject is the provider's own id and needs no such flag.
    verified = claims.get("email_verified") is True
    for claim in ("email", "sub") if verified else ("sub",):
        value = claims.get(claim)
        if isinstance(value, str) and value.strip() and value.strip().casefold() in allowed:
            return OPERATOR
    claim = settings.console_role_claim
    if claim and settings.console_operator_role in _claim_values(claims.get(claim)):
        return OPERATOR
    return VIEWER


def oidc_identity(claims: Mapping[str, object], settings: ConsoleSettings) -> Identity | None:
    """The identity the provider gave, or None when it gave neither an email nor a subject."""
    for claim in ("email", "sub"):
        value = claims.get(claim)
        if isinstance(value, str) and value.strip():
            return Identity(value.strip(), role_from_claims(claims, settings), "oidc")
    return None


def _oidc_claims() -> Mapping[str, object] | None:
    try:
        if st.user.is_logged_in:
            return st.user.to_dict()
    except Exception:  # no OIDC user in this session
        pass
    return None


def local_operator(settings: ConsoleSettings) -> str:
    name = settings.console_local_operator
    if not name:
        try:
            name = getpass.getuser()
        except Exception:  # no user name for this uid (some containers)
            name = "unknown"
    return f"local:{name}"


def current(settings: ConsoleSettings) -> Identity | None:
    """Who is logged in to this session, or None."""
    if oidc_configured():
        claims = _oidc_claims()
        return None if claims is None else oidc_identity(claims, settings)
    who = st.session_state.get(SESSION_KEY)
    return Identity(who, OPERATOR, "password") if isinstance(who, str) else None


def operator(settings: ConsoleSettings | None = None) -> str | None:
    """The logged-in operator's audit identity, or None for a viewer or nobody."""
    identity = current(settings or load())
    return identity.who if identity and identity.may_act else None


def refusal(identity: Identity | None) -> str | None:
    """Why this identity may not act, or None when it may."""
    if identity is None:
        return "Read-only: log in as an operator (sidebar) to act."
    if not identity.may_act:
        return f"Read-only: {identity.who} is a viewer; only operators may act."
    return None


def password_matches(settings: ConsoleSettings, given: str) -> bool:
    if settings.console_password is None or not isinstance(given, str) or not given:
        return False
    expected = settings.console_password.get_secret_value().encode()
    return hmac.compare_digest(expected, given.encode("utf-8", errors="replace"))


@dataclass(frozen=True)
class Admission:
    """What one login attempt came to, as the throttle saw it at that very moment."""

    accepted: bool
    retry_after: float = 0.0
    """Refused without looking at the password: seconds until an attempt is looked at."""
    locked_for: float = 0.0
    """A counted failure that started a lock of this many seconds (0: none)."""
    in_a_row: int = 0
    total: int = 0

    @property
    def compared(self) -> bool:
        return self.retry_after == 0


@dataclass
class LoginThrottle:
    """Failed password logins, counted; after ``free_attempts`` in a row each one locks the
    login for 1, 2, 4, ... seconds (at most ``max_delay``). A locked login is refused at once
    without looking at the password: nothing sleeps, so no server thread is held."""

    free_attempts: int = 3
    max_delay: float = 300.0
    clock: Callable[[], float] = time.monotonic
    in_a_row: int = 0
    total: int = 0
    locked_until: float = -math.inf
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def retry_after(self) -> float:
        """Seconds until the next attempt is looked at; 0 when it is now."""
        return max(0.0, self.locked_until - self.clock())

    def admit(self, check: Callable[[], bool]) -> Admission:
        """One attempt: refuse it while locked, else run ``check`` (the password comparison)
        and count its failure or clear the count.

        All in one step under the lock: with the lock test and the count apart, many sessions
        guessing at the same moment all passed "not locked" before any failure was counted,
        and every one of their guesses was compared. ``check`` is an hmac comparison, cheap
        enough to hold the lock for."""
        with self._lock:
            wait = self.retry_after()
            if wait > 0:
                return Admission(False, retry_after=wait, in_a_row=self.in_a_row, total=self.total)
            if check():
                self._reset()
                return Admission(True, in_a_row=0, total=self.total)
            delay = self._count_failure()
            return Admission(False, locked_for=delay, in_a_row=self.in_a_row, total=self.total)

    def failed(self) -> float:
        """Count one failure; the lock it starts in seconds (0: none)."""
        with self._lock:
            return self._count_failure()

    def succeeded(self) -> None:
        with self._lock:
            self._reset()

    def _count_failure(self) -> float:
        # Callers hold self._lock.
        self.in_a_row += 1
        self.total += 1
        over = self.in_a_row - self.free_attempts
        if over < 0:
            return 0.0
        delay = min(2.0 ** min(over, 60), self.max_delay)
        self.locked_until = self.clock() + delay
        return delay

    def _reset(self) -> None:
        # Callers hold self._lock.
        self.in_a_row = 0
        self.locked_until = -math.inf


# Per process, not per session: a new browser session is free to open, a new process is not.
_THROTTLE = LoginThrottle()


def throttle(settings: ConsoleSettings) -> LoginThrottle:
    """The process's login throttle, with the limits the settings give now."""
    _THROTTLE.free_attempts = settings.console_login_free_attempts
    _THROTTLE.max_delay = settings.console_login_max_delay
    return _THROTTLE


def attempt_password_login(settings: ConsoleSettings, password: str) -> str | None:
    """Log this session in with the password; None on success, else why not."""
    gate = throttle(settings)
    admission = gate.admit(lambda: password_matches(settings, password))
    if admission.retry_after > 0:
        return (
            "Too many failed logins: the next attempt is accepted in "
            f"{math.ceil(admission.retry_after)} s."
        )
    if admission.accepted:
        who = local_operator(settings)
        st.session_state[SESSION_KEY] = who
        _audit(settings, who=who, result="ok")
        return None
    delay = admission.locked_for
    st.session_state[FAILED_KEY] = int(st.session_state.get(FAILED_KEY, 0)) + 1
    # Exported through the audit log: each counted failure is one line, and the lock keeps
    # counted failures to one per lock period, so guessing cannot flood the log.
    _audit(
        settings,
        who="anonymous",
        result="wrong password",
        failures_in_a_row=admission.in_a_row,
        failures_total=admission.total,
        locked_seconds=delay,
    )
    if delay:
        return f"Wrong password. Too many failed logins: locked for {math.ceil(delay)} s."
    return "Wrong password."


def _audit(settings: ConsoleSettings, *, who: str, result: str, **details: object) -> None:
    # A login is not an action: an unwritable audit log is logged, and the login goes on.
    try:
        audit.append(
            settings.audit_log, who=who, what="log in", result=result, via="password", **details
        )
    except OSError as exc:
        log.error("cannot write the audit log %s: %s", settings.audit_log, exc)


def sidebar(settings: ConsoleSettings) -> None:
    with st.sidebar:
        identity = current(settings)
        if identity:
            st.success(f"{identity.who} ({identity.role})")
            if not identity.may_act:
                st.caption(str(refusal(identity)))
            if st.button("Log out", key="logout"):
                st.session_state.pop(SESSION_KEY, None)
                if identity.via == "oidc":
                    st.logout()
                st.rerun()
            return
        st.caption("Read-only. Log in to act on the fleet.")
        if oidc_configured():
            # The provider is the only way in: a shared password would bypass its roles.
            if st.button("Log in with SSO", key="oidc_login"):
                st.login()
            return
        if settings.console_password is None:
            st.caption("No FLEETOPS_CONSOLE_PASSWORD is set: password login is off.")
            return
        st.caption(f"Acting as {local_operator(settings)} after login.")
        password = st.text_input("Console password", type="password", key="operator_password")
        if st.button("Log in", key="login"):
            problem = attempt_password_login(settings, password)
            if problem is None:
                st.rerun()
            st.error(problem)
        failed = throttle(settings).total
        if failed:
            mine = int(st.session_state.get(FAILED_KEY, 0))
            st.caption(f"Failed logins: {mine} here, {failed} on this console since it started.")
