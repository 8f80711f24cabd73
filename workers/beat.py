"""Beat scheduler that reports its schedule and each run as events, so the exporter knows every
periodic task before its first run and a missed run can be alerted on.

Two events, both through Celery's event dispatcher (the broker is the only path between Beat,
the exporter and the console; none of them may assume another runs on its host):

* ``beat-sent`` after each run it sends (name, task, interval);
* ``beat-schedule``, the whole schedule with each entry's next expected run: when Beat starts,
  whenever the schedule changes, within a second after runs, and every :data:`ANNOUNCE_EVERY`
  seconds, so an exporter that starts later learns it within that time instead of after each
  entry's next run.
"""

from __future__ import annotations

import logging
import socket
import time
from datetime import timedelta

from celery.beat import PersistentScheduler, ScheduleEntry
from celery.utils.time import maybe_make_aware

log = logging.getLogger(__name__)

EVENT_TYPE = "beat-sent"
SCHEDULE_EVENT_TYPE = "beat-schedule"
# Often enough that a restarted exporter fills the Beat page within half a minute; Beat then
# wakes at least this often (a tick costs microseconds) instead of sleeping up to 5 minutes.
ANNOUNCE_EVERY = 30.0
# After a run the schedule is announced again (its exact next run), at most once a second
# however many entries run together.
MIN_ANNOUNCE_GAP = 1.0
# An event stays a few hundred KiB at most however large the schedule: the soonest entries are
# announced and ``entries_total`` says how many there are (the exporter then purges nothing).
MAX_ANNOUNCED_ENTRIES = 500


def interval_seconds(entry: ScheduleEntry) -> float:
    schedule = entry.schedule
    run_every = getattr(schedule, "run_every", None)
    if isinstance(run_every, timedelta):
        return run_every.total_seconds()
    # crontab and solar schedules have no fixed period: use the gap between their next two
    # runs, which stays put between runs (the time left to the next run shrinks to nothing
    # before each, and lateness is measured in intervals). remaining_estimate(x) is the time
    # from now to the first run after x; a second past the next run steps over it.
    now = schedule.now()
    first = now + schedule.remaining_estimate(now)
    second = now + schedule.remaining_estimate(first + timedelta(seconds=1))
    return max((second - first).total_seconds(), 1.0)


def describe(entry: ScheduleEntry, now: float) -> dict:
    """One entry as announced: its next expected run (epoch seconds, in the past when it is
    overdue), and its last run only when Beat has run it (a fresh entry's ``last_run_at`` is
    the time Beat first loaded it, not a run)."""
    remaining = entry.schedule.remaining_estimate(maybe_make_aware(entry.last_run_at))
    last_run = None
    if entry.total_run_count:
        last_run = maybe_make_aware(entry.last_run_at).timestamp()
    return {
        "name": entry.name,
        "task": entry.task,
        "interval_seconds": interval_seconds(entry),
        "next_run": now + remaining.total_seconds(),
        "last_run": last_run,
        "total_run_count": entry.total_run_count,
    }


def schedule_event(entries: list[ScheduleEntry], now: float) -> dict:
    """The fields of one ``beat-schedule`` event (docs/metrics.md). An entry whose next run
    cannot be computed is left out and logged: one broken entry must not hide the others."""
    described = []
    for entry in entries:
        try:
            described.append(describe(entry, now))
        except Exception:
            log.exception("cannot compute the next run of beat entry %s", entry.name)
    described.sort(key=lambda e: (e["next_run"], e["name"]))
    return {"entries": described[:MAX_ANNOUNCED_ENTRIES], "entries_total": len(entries)}


class ReportingScheduler(PersistentScheduler):
    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self._dispatcher = None
        self._next_announce = 0.0  # monotonic; 0: at the first tick
        self._announced_at = 0.0
        super().__init__(*args, **kwargs)

    def _events(self):  # type: ignore[no-untyped-def]
        if self._dispatcher is None:
            self._dispatcher = self.app.events.Dispatcher(
                self.app.connection_for_write(),
                hostname=f"beat@{socket.gethostname()}",
                enabled=True,
            )
        return self._dispatcher

    def populate_heap(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        # Celery rebuilds its heap exactly when the schedule changed (and at the first tick):
        # announce the new schedule at once.
        super().populate_heap(*args, **kwargs)
        self._next_announce = 0.0

    def tick(self, *args, **kwargs) -> float:  # type: ignore[no-untyped-def]
        delay = super().tick(*args, **kwargs)
        now = time.monotonic()
        if now >= self._next_announce:
            self.announce()
            self._announced_at = now
            self._next_announce = now + ANNOUNCE_EVERY
        return min(delay, max(self._next_announce - now, 0.0))

    def announce(self) -> None:
        try:
            fields = schedule_event(list(self.schedule.values()), time.time())
            self._events().send(SCHEDULE_EVENT_TYPE, **fields)
        except Exception:  # reporting must never stop the schedule
            log.exception("could not announce the beat schedule")
            self._dispatcher = None

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
        self._next_announce = min(self._next_announce, self._announced_at + MIN_ANNOUNCE_GAP)

    def close(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.close()
        super().close()
