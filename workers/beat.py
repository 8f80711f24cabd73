"""Beat scheduler that reports its schedule and each run as events, so the exporter knows every
periodic task before its first run and a missed run can be alerted on.

Two events, both through Celery's event dispatcher (the broker is the only path between Beat,
the exporter and the console; none of them may assume another runs on its host):

* ``beat-sent`` after each run it sends (name, task, interval), only once the broker took it;
* ``beat-schedule``, the whole schedule with each entry's next expected run: when Beat starts,
  whenever the schedule changes, within a second after runs (sent or failed), and every
  :data:`ANNOUNCE_EVERY` seconds, so an exporter that starts later learns it within that time
  instead of after each entry's next run.

Celery moves an entry's schedule on (``last_run_at``) before it sends, and only logs a send
that fails ("Message Error"). Announcing Celery's view would make an entry that never gets sent
look on time forever, so the announcement says what was really sent: the last successful send
as last run and, while the entry's sends fail, the due time of the first failed one as next run,
which then stays put until the missed-run alert fires.
"""

from __future__ import annotations

import logging
import socket
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta

from celery.beat import PersistentScheduler, ScheduleEntry
from celery.utils.time import maybe_make_aware

log = logging.getLogger(__name__)
# Sends are logged as Celery's own scheduler logs them, so filters and runbooks keep matching.
send_log = logging.getLogger("celery.beat")

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


def next_run(entry: ScheduleEntry, now: float) -> float:
    """When the entry is due after its ``last_run_at`` (epoch seconds, in the past when it is
    overdue): for the entry Celery hands to ``apply_entry``, the due time of that send."""
    remaining = entry.schedule.remaining_estimate(maybe_make_aware(entry.last_run_at))
    return now + remaining.total_seconds()


def last_run(entry: ScheduleEntry) -> float | None:
    """The entry's last run as Celery records it, only when Beat has run it (a fresh entry's
    ``last_run_at`` is the time Beat first loaded it, not a run)."""
    if not entry.total_run_count:
        return None
    return maybe_make_aware(entry.last_run_at).timestamp()


def describe(entry: ScheduleEntry, now: float) -> dict:
    """One entry as announced, from Celery's own record of it: its next expected run and its
    last run (see :func:`next_run`, :func:`last_run`)."""
    return {
        "name": entry.name,
        "task": entry.task,
        "interval_seconds": interval_seconds(entry),
        "next_run": next_run(entry, now),
        "last_run": last_run(entry),
        "total_run_count": entry.total_run_count,
    }


@dataclass
class Sends:
    """What this Beat process really sent of one entry (Celery's record counts failed sends)."""

    last_success: float | None  # epoch seconds; before the first success, Celery's last run
    first_failed_due: float | None = None  # due time of the first failed send since a success


def schedule_event(
    entries: list[ScheduleEntry], now: float, sends: dict[str, Sends] | None = None
) -> dict:
    """The fields of one ``beat-schedule`` event (docs/metrics.md). An entry whose next run
    cannot be computed is left out and logged: one broken entry must not hide the others.
    An entry in ``sends`` is announced with what was really sent: its last successful send
    as last run and, while it fails, its first failed due time as next run."""
    sends = sends or {}
    described = []
    for entry in entries:
        try:
            fields = describe(entry, now)
        except Exception:
            log.exception("cannot compute the next run of beat entry %s", entry.name)
            continue
        sent = sends.get(entry.name)
        if sent is not None:
            fields["last_run"] = sent.last_success
            if sent.first_failed_due is not None:
                fields["next_run"] = sent.first_failed_due
        described.append(fields)
    described.sort(key=lambda e: (e["next_run"], e["name"]))
    return {"entries": described[:MAX_ANNOUNCED_ENTRIES], "entries_total": len(entries)}


class ReportingScheduler(PersistentScheduler):
    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self._dispatcher = None
        self._next_announce = 0.0  # monotonic; 0: at the first tick
        self._announced_at = 0.0
        # Per entry name, once this process has tried to send it; before that (e.g. just
        # after a restart) Celery's record, from the persistent schedule file, is announced.
        self._sends: dict[str, Sends] = {}
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
            entries = list(self.schedule.values())
            # Entries that left the schedule are forgotten, so the map stays the schedule's size.
            for name in self._sends.keys() - {entry.name for entry in entries}:
                del self._sends[name]
            fields = schedule_event(entries, time.time(), self._sends)
            self._events().send(SCHEDULE_EVENT_TYPE, **fields)
        except Exception:  # reporting must never stop the schedule
            log.exception("could not announce the beat schedule")
            self._dispatcher = None

    def apply_entry(self, entry: ScheduleEntry, producer=None) -> None:  # type: ignore[no-untyped-def]
        # ``entry`` is the entry before Celery's reserve(): its last_run_at is the run before
        # this one, so its next run is the due time of this send.
        now = time.time()
        sent = self._sends.get(entry.name)
        if sent is None:
            sent = self._sends[entry.name] = Sends(last_success=last_run(entry))
        # Celery's apply_entry, but knowing whether the broker took the message.
        send_log.info("Scheduler: Sending due task %s (%s)", entry.name, entry.task)
        try:
            result = self.apply_async(entry, producer=producer, advance=False)
        except Exception as exc:
            send_log.error("Message Error: %s\n%s", exc, traceback.format_stack(), exc_info=True)
            if sent.first_failed_due is None:
                sent.first_failed_due = self._due(entry, now)
        else:
            send_log.debug("%s sent. id->%s", entry.task, getattr(result, "id", None))
            sent.last_success = now
            sent.first_failed_due = None
            self._report_sent(entry)
        # Announced within a second, sent or not: a failure stops the next run from moving.
        self._next_announce = min(self._next_announce, self._announced_at + MIN_ANNOUNCE_GAP)

    @staticmethod
    def _due(entry: ScheduleEntry, now: float) -> float:
        try:
            return min(next_run(entry, now), now)
        except Exception:  # its next run cannot be computed: it was due now
            return now

    def _report_sent(self, entry: ScheduleEntry) -> None:
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
