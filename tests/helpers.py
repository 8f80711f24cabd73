"""Small helpers for tests that wait on real processes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import httpx
import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc

T = TypeVar("T")

# What a predicate may raise while a server is still starting or a write is still on its way:
# refused connections (OSError, which includes the builtin TimeoutError), HTTP errors, a broker
# (kombu), a Redis or a database not answering yet. Anything else (an AssertionError,
# ProcessExited, a bug in the predicate) is an answer, not a reason to wait: it propagates.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    httpx.HTTPError,
    kombu.exceptions.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    sqlalchemy.exc.OperationalError,
)


class ProcessExited(RuntimeError):
    """Raised by a readiness predicate when the process it waits for has died: waiting longer
    cannot help, and the message carries the end of the process's log."""


def exited(what: str, returncode: int | None, log: str) -> ProcessExited:
    """The error for a dead process, with the last 3000 characters of its log."""
    return ProcessExited(f"{what} exited with code {returncode}:\n{log[-3000:]}")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    interval: float = 0.05,
    message: str = "condition",
    retry_on: tuple[type[Exception], ...] = TRANSIENT_ERRORS,
) -> T:
    """Poll ``predicate`` until it returns something truthy; return that value.

    Errors in ``retry_on`` (the transient ones by default) are retried until the timeout and
    named in the TimeoutError; any other exception propagates at once with its message.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except retry_on as exc:  # the server may not be up yet: try again
            last_error = exc
        else:
            if value:
                return value
        time.sleep(interval)
    suffix = f" (last error: {last_error!r})" if last_error else ""
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {message}{suffix}")
