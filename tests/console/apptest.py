"""Run one console page in-process with streamlit.testing.v1.AppTest."""

from __future__ import annotations

from typing import Any

from streamlit.testing.v1 import AppTest

from tests.servers import REPO

PAGES = REPO / "console" / "views"
# Generous: a page may wait for several sources while three other test runs share the CPU.
TIMEOUT = 90


def page(name: str, **query: str) -> AppTest:
    app = AppTest.from_file(str(PAGES / f"page_{name}.py"), default_timeout=TIMEOUT)
    for key, value in query.items():
        app.query_params[key] = value
    return app


def run(target: AppTest | Any) -> AppTest:
    """Run the page (or the page of a widget just changed) and fail on a Streamlit exception."""
    app = target.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def texts(app: AppTest) -> str:
    """Every markdown, caption, alert and title on the page, one per line."""
    parts = [e.value for e in app.markdown]
    parts += [e.value for e in app.caption]
    parts += [e.value for e in app.error] + [e.value for e in app.success]
    parts += [e.value for e in app.info] + [e.value for e in app.warning]
    parts += [e.value for e in app.title]
    return "\n".join(str(part) for part in parts)


def login(app: AppTest, *credentials: str) -> AppTest:
    """Log in with the console password, the last argument. The console asks for no name (the
    audit identity is the configured local operator); a name before the password is ignored."""
    app.text_input(key="operator_password").input(credentials[-1])
    app.button(key="login").click()
    return run(app)
