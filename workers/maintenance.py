"""Maintenance tasks, including a probe that makes exact, known workloads for tests and load."""

from __future__ import annotations

import builtins
import time

from workers.app import app
from workers.errors import PermanentError, TransientError

_RAISABLE = {"TransientError": TransientError, "PermanentError": PermanentError}


@app.task(name="maintenance.probe")
def probe(duration: float = 0.0, fail: str | None = None) -> float:
    """Sleep ``duration`` seconds, then raise the exception named by ``fail``, if any."""
    if duration:
        time.sleep(duration)
    if fail:
        error = _RAISABLE.get(fail) or getattr(builtins, fail, None)
        if not (isinstance(error, type) and issubclass(error, Exception)):
            error = RuntimeError
        raise error(f"probe asked to fail with {fail}")
    return duration
