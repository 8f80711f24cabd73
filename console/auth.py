"""Who the operator is: Streamlit's OIDC login when configured, else the local password.
Without either, the console is read-only."""

from __future__ import annotations

import hmac

import streamlit as st

from console.settings import ConsoleSettings

SESSION_KEY = "fleetops_operator"


def oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except (FileNotFoundError, KeyError, AttributeError):
        return False
    except Exception:  # a malformed secrets file: the password still works
        return False


def operator() -> str | None:
    """The authenticated operator's name, or None (read-only)."""
    if oidc_configured():
        try:
            if st.user.is_logged_in:
                return str(st.user.get("email") or st.user.get("name") or "oidc-user")
        except Exception:  # no OIDC user in this session
            pass
    return st.session_state.get(SESSION_KEY)


def password_matches(settings: ConsoleSettings, given: str) -> bool:
    if settings.console_password is None or not given:
        return False
    expected = settings.console_password.get_secret_value().encode()
    return hmac.compare_digest(expected, given.encode())


def sidebar(settings: ConsoleSettings) -> None:
    with st.sidebar:
        who = operator()
        if who:
            st.success(f"Operator: {who}")
            if st.button("Log out", key="logout"):
                st.session_state.pop(SESSION_KEY, None)
                if oidc_configured():
                    st.logout()
                st.rerun()
            return
        st.caption("Read-only. Log in to act on the fleet.")
        if oidc_configured() and st.button("Log in with SSO", key="oidc_login"):
            st.login()
        if settings.console_password is None:
            st.caption("No FLEETOPS_CONSOLE_PASSWORD is set: password login is off.")
            return
        name = st.text_input("Your name (for the audit log)", key="operator_name")
        password = st.text_input("Console password", type="password", key="operator_password")
        if st.button("Log in", key="login"):
            if password_matches(settings, password) and name.strip():
                st.session_state[SESSION_KEY] = name.strip()
                st.rerun()
            else:
                st.error("Wrong password, or no name given.")
