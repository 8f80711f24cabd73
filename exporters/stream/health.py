"""Health from progress, not from "the process answers".

Each thread of a consumer is a :class:`Part`: it beats every time it goes round its loop, and
may report work waiting for it and when it last finished some. A part is stalled when its
thread has died, when it has not gone round its loop for ``STALL_AFTER`` seconds, or when work
has waited that long without any being done. ``/healthz`` answers 503 naming the stalled parts,
and ``..._stalled{part}`` says the same to Prometheus, so an exporter or recorder that still
serves HTTP but no longer applies events pages like a dead one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# Longer than the longest wait a healthy part makes (the reader's 30 s reconnect backoff).
STALL_AFTER = 45.0


@dataclass
class Part:
    name: str
    # Monotonic time this part last went round its loop.
    beat: Callable[[], float]
    thread: threading.Thread | None = None
    # Work waiting for this part, and when it last finished some (monotonic).
    backlog: Callable[[], int] | None = None
    progress: Callable[[], float] | None = None
    stall_after: float = STALL_AFTER

    def age(self, now: float) -> float:
        return max(0.0, now - self.beat())

    def problem(self, now: float) -> str | None:
        stall_after = self.stall_after
        if self.thread is not None and not self.thread.is_alive():
            return f"{self.name} thread has died"
        age = self.age(now)
        if age > stall_after:
            return f"{self.name} stuck for {age:.0f}s"
        if self.backlog is not None and self.progress is not None:
            waiting = self.backlog()
            idle = now - self.progress()
            if waiting and idle > stall_after:
                return f"{self.name}: {waiting} waiting, nothing done for {idle:.0f}s"
        return None


class Beat:
    """A beat a thread can set cheaply: ``beat.now()`` in its loop, ``beat.at`` read by health."""

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at = time.monotonic()

    def now(self) -> None:
        self.at = time.monotonic()

    def __call__(self) -> float:
        return self.at


def problems(parts: list[Part], now: float | None = None) -> dict[str, str]:
    """The stalled parts and why, by part name."""
    now = time.monotonic() if now is None else now
    found: dict[str, str] = {}
    for part in parts:
        problem = part.problem(now)
        if problem is not None:
            found[part.name] = problem
    return found
