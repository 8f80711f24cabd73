"""A bounded buffer between the event source and the database writer that never blocks the
source: events wait in memory, and once memory is full (the database is down or slow) they
go to segment files on disk, up to a byte bound. Beyond the bound events are dropped and
counted, so the operator sees exactly how much history is missing.

A spool the disk refuses (full, removed, read-only) loses only the events that did not fit,
counted with the reason ``spool_error``; it never raises into the thread that queues events.

Order is first in, first out: while anything waits on disk, new events go to disk too. The
writer takes a batch, writes it, then commits it; a disk segment is deleted only after every
event read from it is committed, so a crash replays the segment (upserts are idempotent).

Because the order is first in, first out, "committed" is one number: how many of the events
that entered (recovered segments first, then every event kept, in order) the writer has
committed. A mark placed with :meth:`when_committed` is handed to ``on_committed`` once every
event queued before it is committed: the recorder acknowledges broker deliveries that way.
Events dropped (bound hit, spool error) never enter, so a mark after them waits only for the
events before them: they are counted, not retried. Marks belong to a *line* (the recorder: one
per app's stream, each acknowledging on its own broker): of the marks passed at one commit, the
last of each line is handed on.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

log = logging.getLogger(__name__)

Event = dict[str, Any]
SEGMENT_SUFFIX = ".jsonl"


@dataclass
class Batch:
    events: list[Event]
    # Set when the events were read from a disk segment: the file to delete once committed.
    segment: Path | None = None
    last_of_segment: bool = False
    # Events this batch takes out of the memory queue; a segment counts whole when it ends.
    entries: int = 0


@dataclass
class _Segment:
    path: Path
    events: int = 0
    size: int = 0


@dataclass
class BufferStats:
    in_memory: int
    on_disk: int
    disk_bytes: int
    dropped: int
    spilled: int = 0


class SpillingBuffer:
    def __init__(
        self,
        memory_events: int,
        spool_dir: Path,
        spool_max_bytes: int,
        *,
        segment_bytes: int = 4 * 1024 * 1024,
        on_drop: Callable[[int, str], None] | None = None,
        on_committed: Callable[[Any], None] | None = None,
    ) -> None:
        self.memory_limit = memory_events
        self.spool_dir = spool_dir
        self.spool_max_bytes = spool_max_bytes
        self.segment_bytes = segment_bytes
        self.on_drop = on_drop
        self.on_committed = on_committed
        # Positions in the first-in-first-out order (see the module's docstring).
        self._entered = 0
        self._committed = 0
        self._marks: deque[tuple[int, Hashable, Any]] = deque()
        self._memory: deque[Event] = deque()
        self._segments: deque[_Segment] = deque()  # closed, oldest first
        self._writing: _Segment | None = None
        self._file: IO[bytes] | None = None
        self._replay: deque[Event] = deque()
        self._replaying: _Segment | None = None
        self._disk_bytes = 0
        self._disk_events = 0
        self._sequence = 0
        self.dropped = 0
        self.spilled = 0
        self._last_spool_error = -60.0
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        try:
            spool_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # memory still works; spilling will count its failures
            log.error("cannot create the spool %s: %s", spool_dir, exc)
        self._recover()

    # -- producer side -----------------------------------------------------------------
    def put(self, event: Event) -> bool:
        """Queue one event; False when the disk bound is hit and the event is dropped."""
        with self._lock:
            if not self._spooling() and len(self._memory) < self.memory_limit:
                self._memory.append(event)
                self._entered += 1
                if len(self._memory) == self.memory_limit:
                    self._ready.notify()
                return True
            return self._spill_locked([event]) == 1

    def put_many(self, events: list[Event]) -> int:
        """Queue events in order (one lock for the lot); returns how many were kept."""
        with self._lock:
            room = self.memory_limit - len(self._memory)
            if not self._spooling() and room >= len(events):
                self._memory.extend(events)
                self._entered += len(events)
                if len(self._memory) == self.memory_limit:
                    self._ready.notify()
                return len(events)
            kept = 0
            if not self._spooling() and room > 0:
                self._memory.extend(events[:room])
                self._entered += room
                kept, events = room, events[room:]
            return kept + self._spill_locked(events)

    def spill(self, events: list[Event]) -> int:
        """Move events to disk (at shutdown, with the database down); returns how many fit."""
        with self._lock:
            return self._spill_locked(events)

    def close(self) -> None:
        """Persist what is still in memory and close the open segment: nothing is lost on a
        clean stop, whatever the state of the database."""
        with self._lock:
            events = list(self._memory)
            self._memory.clear()
            if events:
                self._spill_locked(events)
            self._rotate_locked()

    # -- writer side -------------------------------------------------------------------
    def take(self, max_events: int, timeout: float) -> Batch | None:
        """Wait up to ``timeout`` for ``max_events`` events, then return what there is."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._available_locked() < max_events:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._ready.wait(remaining)
            if self._memory:
                count = min(max_events, len(self._memory))
                pop = self._memory.popleft
                return Batch([pop() for _ in range(count)], entries=count)
            return self._take_from_disk_locked(max_events)

    def commit(self, batch: Batch) -> None:
        with self._lock:
            self._committed += batch.entries
            if batch.segment is not None and batch.last_of_segment:
                self._finish_segment_locked(batch.segment)
            passed = self._passed_marks_locked()
        self._hand_on(passed)

    def when_committed(self, mark: Any, line: Hashable = None) -> None:
        """Hand ``mark`` to ``on_committed`` once every event queued so far is committed (at
        once when they are). Marks are handed on in order; of several of one ``line`` passed
        at one commit only the last is, since it stands for the ones before it."""
        with self._lock:
            self._marks.append((self._entered, line, mark))
            passed = self._passed_marks_locked()
        self._hand_on(passed)

    def _passed_marks_locked(self) -> dict[Hashable, Any]:
        passed: dict[Hashable, Any] = {}
        marks = self._marks
        while marks and marks[0][0] <= self._committed:
            _, line, mark = marks.popleft()
            passed[line] = mark
        return passed

    def _hand_on(self, passed: dict[Hashable, Any]) -> None:
        if self.on_committed is not None:
            for mark in passed.values():
                self.on_committed(mark)

    def stats(self) -> BufferStats:
        with self._lock:
            return BufferStats(
                in_memory=len(self._memory),
                on_disk=self._disk_events,
                disk_bytes=self._disk_bytes,
                dropped=self.dropped,
                spilled=self.spilled,
            )

    def pending(self) -> int:
        with self._lock:
            return len(self._memory) + self._disk_events

    # -- internals ---------------------------------------------------------------------
    def _spooling(self) -> bool:
        return bool(self._segments or self._writing or self._replaying)

    def _available_locked(self) -> int:
        return len(self._memory) + self._disk_events

    def _spill_locked(self, events: list[Event]) -> int:
        written = 0
        for event in events:
            try:
                line = orjson.dumps(event, default=str) + b"\n"
            except (TypeError, ValueError):  # cannot be written at all: count it, go on
                self._drop_locked(1, "spool_error")
                continue
            if self._disk_bytes + len(line) > self.spool_max_bytes:
                self._drop_locked(len(events) - written, "buffer_full")
                break
            try:
                if self._writing is None or self._writing.size >= self.segment_bytes:
                    self._rotate_locked()
                    self._open_segment_locked()
                assert self._file is not None and self._writing is not None
                # Unbuffered: a write the disk refuses fails here, for this event, instead of
                # at a later flush that would lose events already counted as spooled.
                if self._file.write(line) != len(line):
                    raise OSError(errno.ENOSPC, "short write to the spool")
            except OSError as exc:
                # Disk full or spool gone: what is not written is lost, and said so; the
                # events already on disk stay readable.
                self._drop_locked(len(events) - written, "spool_error")
                self._log_spool_error(exc)
                self._close_broken_segment_locked()
                break
            self._writing.size += len(line)
            self._writing.events += 1
            self._disk_bytes += len(line)
            self._disk_events += 1
            written += 1
        self.spilled += written
        self._entered += written
        if written:
            self._ready.notify()
        return written

    def _drop_locked(self, count: int, reason: str) -> None:
        if count <= 0:
            return
        self.dropped += count
        if self.on_drop is not None:
            self.on_drop(count, reason)

    def _log_spool_error(self, exc: OSError) -> None:
        now = time.monotonic()
        if now - self._last_spool_error >= 60.0:
            self._last_spool_error = now
            log.error("cannot write to the spool %s: %s; events dropped", self.spool_dir, exc)

    def _close_broken_segment_locked(self) -> None:
        """After a failed write: close the file, keep what it holds if anything."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        if self._writing is not None:
            if self._writing.events:
                self._segments.append(self._writing)
            else:
                with contextlib.suppress(OSError):
                    self._writing.path.unlink(missing_ok=True)
            self._writing = None

    def _open_segment_locked(self) -> None:
        self._sequence += 1
        path = self.spool_dir / f"{time.time_ns():020d}-{self._sequence:06d}{SEGMENT_SUFFIX}"
        self._writing = _Segment(path)
        self._file = path.open("ab", buffering=0)

    def _rotate_locked(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
                self._file.close()
            except OSError as exc:
                self._log_spool_error(exc)
            self._file = None
        if self._writing is not None:
            if self._writing.events:
                self._segments.append(self._writing)
            else:
                self._writing.path.unlink(missing_ok=True)
            self._writing = None

    def _take_from_disk_locked(self, max_events: int) -> Batch | None:
        if not self._replay and self._replaying is None:
            if not self._segments:
                if self._writing is None:
                    return None
                self._rotate_locked()
            segment = self._segments.popleft()
            self._replaying = segment
            self._replay = deque(self._read_segment(segment))
            if not self._replay:  # empty or unreadable: nothing to wait for
                self._finish_segment_locked(segment.path)
                return None
        assert self._replaying is not None
        count = min(max_events, len(self._replay))
        pop = self._replay.popleft
        events = [pop() for _ in range(count)]
        return Batch(events, self._replaying.path, last_of_segment=not self._replay)

    def _finish_segment_locked(self, path: Path) -> None:
        segment = self._replaying
        if segment is None or segment.path != path:
            return
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # written already: at worst replayed (upserts are idempotent)
            self._log_spool_error(exc)
        self._disk_bytes -= segment.size
        self._disk_events -= segment.events
        self._committed += segment.events
        self._replaying = None
        self._replay.clear()

    def _read_segment(self, segment: _Segment) -> list[Event]:
        events: list[Event] = []
        try:
            data = segment.path.read_bytes()
        except OSError as exc:
            log.error("cannot read spooled events %s: %s", segment.path, exc)
            return events
        for number, line in enumerate(data.splitlines(), 1):
            try:
                events.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                # A torn last line after a crash mid-write; the rest of the file is good.
                log.warning("skipping unreadable line %d of %s", number, segment.path)
        return events

    def _recover(self) -> None:
        """Pick up segments left by a previous run (stopped while the database was down)."""
        for path in sorted(self.spool_dir.glob("*" + SEGMENT_SUFFIX)):
            with contextlib.suppress(OSError):
                data = path.read_bytes()
                segment = _Segment(path, events=data.count(b"\n"), size=len(data))
                self._segments.append(segment)
                self._disk_bytes += segment.size
                self._disk_events += segment.events
                self._entered += segment.events
        if self._segments:
            log.info(
                "%d spooled events from a previous run will be written first", self._disk_events
            )
