"""What the recorder says about a database outage: one WARNING when it starts, one INFO when
the database is back and one when the backlog is written. The retries in between are DEBUG
only; their count is the ``fleetops_history_write_errors_total`` metric, so a long outage does
not bury the log under one line per retry."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("exporters.history.recorder")


class OutageLog:
    def __init__(self, database: str, retry_max_seconds: float) -> None:
        self.database = database
        self.retry_max_seconds = retry_max_seconds
        self.started: float | None = None  # monotonic time of the first failed write
        self.retries = 0
        self._recovering = False
        self._written_since_back = 0

    @property
    def down(self) -> bool:
        return self.started is not None

    def failed(self, kind: str, reason: str, backlog: int, retry_in: float) -> None:
        self.retries += 1
        if self.started is not None:
            log.debug(
                "recorder: database still %s (%s); retry %d in %.1fs, %d events buffered",
                kind, reason, self.retries, retry_in, backlog,
            )  # fmt: skip
            return
        self.started = time.monotonic()
        self._recovering = False
        log.warning(
            "recorder: database %s %s (%s); buffering events (%d waiting) and retrying"
            " with backoff up to every %.0fs",
            self.database, kind, reason, backlog, self.retry_max_seconds,
        )  # fmt: skip

    def written(self, events: int, backlog: int) -> None:
        if self.started is not None:
            log.info(
                "recorder: database %s back after %.1fs and %d failed attempts;"
                " writing %d buffered events",
                self.database, time.monotonic() - self.started, self.retries, backlog + events,
            )  # fmt: skip
            self.started = None
            self.retries = 0
            self._recovering = True
            self._written_since_back = 0
        if self._recovering:
            self._written_since_back += events
            if backlog == 0:
                self.caught_up()

    def caught_up(self) -> None:
        """Called when the buffer is empty: the end of a recovery, if one is under way."""
        if not self._recovering:
            return
        self._recovering = False
        log.info(
            "recorder: caught up after the outage: %d events written", self._written_since_back
        )
