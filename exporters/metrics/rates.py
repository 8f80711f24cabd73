"""Events per second over the last minute, in 60 one-second slots (no growth, no timers)."""

from __future__ import annotations

WINDOW = 60


class MinuteRate:
    __slots__ = ("counts", "seconds", "started")

    def __init__(self, now: float) -> None:
        self.counts = [0] * WINDOW
        self.seconds = [-1] * WINDOW
        self.started = now

    def add(self, now: float, amount: int = 1) -> None:
        second = int(now)
        slot = second % WINDOW
        if self.seconds[slot] != second:
            self.seconds[slot] = second
            self.counts[slot] = 0
        self.counts[slot] += amount

    def per_second(self, now: float) -> float:
        second = int(now)
        total = sum(
            c for c, s in zip(self.counts, self.seconds, strict=True) if 0 <= second - s < WINDOW
        )
        # Before a full minute has passed, divide by the time actually observed.
        span = min(float(WINDOW), max(1.0, now - self.started))
        return total / span
