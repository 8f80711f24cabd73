"""Count what the pipeline refused or repaired, and say so in the log without flooding it.

Every reason is logged the first time with a short sample, then at most once a minute with
how many more there were: a stream of a million bad events costs a handful of log lines, and
the counters (exported as ``..._events_rejected_total{reason}``) carry the exact numbers.
"""

from __future__ import annotations

import logging
import threading
import time

from exporters.stream.events import CORRECTION_REASONS, REJECT_REASONS

LOG_EVERY = 60.0


class Rejections:
    def __init__(self, logger: logging.Logger, what: str = "event") -> None:
        self.log = logger
        self.what = what
        # Every reason from the start, at 0: rate() and increase() need the first sample.
        self.rejected: dict[str, int] = dict.fromkeys(REJECT_REASONS, 0)
        self.corrected: dict[str, int] = dict.fromkeys(CORRECTION_REASONS, 0)
        self._last_logged: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}
        self._lock = threading.Lock()

    def reject(self, reason: str, detail: str, amount: int = 1) -> None:
        with self._lock:
            self.rejected[reason] = self.rejected.get(reason, 0) + amount
            self._maybe_log(f"dropped {self.what} ({reason})", reason, detail, amount)

    def correct(self, corrections: dict[str, int]) -> None:
        """Fold in a checker's correction counts (and clear them there)."""
        if not corrections:
            return
        with self._lock:
            for reason, amount in corrections.items():
                self.corrected[reason] = self.corrected.get(reason, 0) + amount
                self._maybe_log(
                    f"repaired {self.what} field ({reason})", "fix:" + reason, "", amount
                )
            corrections.clear()

    def counts(self) -> dict[str, int]:
        """A copy of the rejections by reason, safe to read from another thread."""
        with self._lock:
            return dict(self.rejected)

    def corrections(self) -> dict[str, int]:
        with self._lock:
            return dict(self.corrected)

    def _maybe_log(self, headline: str, key: str, detail: str, amount: int) -> None:
        now = time.monotonic()
        last = self._last_logged.get(key)
        if last is not None and now - last < LOG_EVERY:
            self._unlogged[key] = self._unlogged.get(key, 0) + amount
            return
        more = self._unlogged.pop(key, 0)
        self._last_logged[key] = now
        since = f" (+{more} more since the last line)" if more else ""
        sample = f": {detail[:200]}" if detail else ""
        self.log.warning("%s%s%s; counted in the metrics", headline, sample, since)
