"""Python's cyclic garbage collector run on the consumer's schedule, not the allocator's.

Decoding and checking make several short-lived containers per event (an envelope, its
properties, the body, the checked event), and a batch of a thousand messages keeps thousands
of them alive at once. With the default thresholds every 700 allocations start a collection
that walks those live objects, promotes them, and soon forces full collections over the whole
metrics state: a fifth of the applier's CPU at 60,000 events/s (A/B in one process, alternating
rounds: 14.5 -> 11.3 µs per event; docs/pipeline.md, "Speed").

Nothing on the hot path makes reference cycles, so a consumer process takes the collector over
(:meth:`ScheduledCollector.take_over`, called once by the process's entry point, never by a
library or a test that shares its interpreter) and the consumer thread collects everything
every ``every`` seconds: whatever cycle a rare path (an exception, a reconnect) leaves behind
lives at most that long. ``collections`` and ``last_pause`` say what it costs.

A process with several apps has a consumer thread per app, and the collector is process-wide:
:func:`take_over_for` gives them all one collector, which every consumer ticks and the first due
tick runs, so a frozen or dead consumer does not leave the process without collections.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Iterable
from typing import Protocol

log = logging.getLogger(__name__)

COLLECT_EVERY = 30.0


class ScheduledCollector:
    def __init__(self, every: float = COLLECT_EVERY) -> None:
        self.every = every
        self.active = False
        self.collections = 0
        self.collected = 0  # unreachable objects found, over all collections
        self.last_pause = 0.0  # seconds the last collection held the interpreter
        self._next_at = 0.0
        self._collecting = threading.Lock()  # consumers of several apps tick it

    def take_over(self) -> None:
        """Stop this process's automatic collections; :meth:`tick` does them from now on. What
        exists at start-up (modules, settings) is frozen out of every later collection."""
        gc.freeze()
        gc.disable()
        self.active = True
        self._next_at = time.monotonic() + self.every

    def tick(self, now: float) -> None:
        """On the consumer thread, between two batches."""
        if not self.active or now < self._next_at:
            return
        if not self._collecting.acquire(blocking=False):
            return  # another consumer is collecting right now
        try:
            if now < self._next_at:  # another consumer collected since the check above
                return
            self._next_at = now + self.every
            started = time.perf_counter()
            found = gc.collect()
            self.last_pause = time.perf_counter() - started
            self.collections += 1
            self.collected += found
        finally:
            self._collecting.release()
        log.debug("collected %d objects in %.3fs", found, self.last_pause)


class _Collected(Protocol):
    collector: ScheduledCollector


def take_over_for(streams: Iterable[_Collected]) -> ScheduledCollector:
    """One collector for every consumer of the process, taken over (once, by its entry point):
    each consumer ticks it, so collections go on while any of them runs."""
    collector = ScheduledCollector()
    for stream in streams:
        stream.collector = collector
    collector.take_over()
    return collector
