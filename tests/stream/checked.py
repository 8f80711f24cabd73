"""Unit tests of the metrics state and the history merge feed event bodies written by hand;
the consumers only ever see checked events, so these helpers check them first, exactly as the
stream's consumer thread does (exporters/stream/consumer.py)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable

from exporters.history.writer import HistoryWriter, WriteResult
from exporters.metrics.state import FleetState
from exporters.stream.events import Checker, Rejected


def checked(bodies: Iterable[object], now: float | None = None) -> list[dict]:
    """The checked form of every usable body; ``now`` defaults to the newest timestamp given,
    so hand-written events from 1970 are not clamped as being from the past."""
    bodies = list(bodies)
    if now is None:
        stamps = [
            b["timestamp"] for b in bodies
            if isinstance(b, dict) and isinstance(b.get("timestamp"), int | float)
        ]  # fmt: skip
        now = max(stamps, default=time.time())
    checker = Checker()
    events = []
    for body in bodies:
        with contextlib.suppress(Rejected):  # counted and tested in tests/stream
            events.append(checker.check(body, now))
    return events


class CheckedFleetState(FleetState):
    """FleetState fed through the checker, as the exporter's applier feeds it."""

    def apply_all(self, events: Iterable[object], now: float) -> None:  # type: ignore[override]
        super().apply_all(checked(events), now)


class CheckedHistoryWriter(HistoryWriter):
    """HistoryWriter fed through the checker, as the recorder's consumer feeds its buffer."""

    def write(self, events: Iterable[object]) -> WriteResult:  # type: ignore[override]
        return super().write(checked(events))
