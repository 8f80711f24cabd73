"""Beat scheduler that reports each run as an event, so a missed schedule can be alerted on."""

from __future__ import annotations

import logging
import socket
from datetime import timedelta

from celery.beat import PersistentScheduler, ScheduleEntry

log = logging.getLogger(__name__)

EVENT_TYPE = "beat-sent"


def interval_seconds(entry: ScheduleEntry) -> float:
    schedule = entry.schedule
    run_every = getattr(schedule, "run_every", None)
    if isinstance(run_every, timedelta):
        return run_every.total_seconds()
    # crontab and solar schedules have no fixed period: use the gap to the next run.
    remaining = schedule.remaining_estimate(schedule.now())
    return max(remaining.total_seconds(), 1.0)


class ReportingScheduler(PersistentScheduler):
    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self._dispatcher = None

    def _events(self):  # type: ignore[no-untyped-def]
        if self._dispatcher is None:
            self._dispatcher = self.app.events.Dispatcher(
                self.app.connection_for_write(),
                hostname=f"beat@{socket.gethostname()}",
                enabled=True,
            )
        return self._dispatcher

    def apply_entry(self, entry: ScheduleEntry, producer=None) -> None:  # type: ignore[no-untyped-def]
        super().apply_entry(entry, producer=producer)
        try:
            self._events().send(
                EVENT_TYPE, name=entry.name, task=entry.task,
                interval_seconds=interval_seconds(entry),
            )  # fmt: skip
        except Exception:  # reporting must never stop the schedule
            log.exception("could not report beat run of %s", entry.name)
            self._dispatcher = None

    def close(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.close()
        super().close()
