"""Exponential backoff with full jitter between reconnect attempts."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    _attempt: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * self.factor**self._attempt)
        self._attempt += 1
        # Full jitter: many exporters restarting together do not hammer the broker in step.
        return random.uniform(self.initial / 2, max(self.initial, ceiling))

    def reset(self) -> None:
        self._attempt = 0
