"""Turn one decoded Celery event body into a checked, normalised event, or reject it.

This is the only place that reads an event's fields. What comes out is a plain dict whose
every value has been type-checked and bounded, so the metrics state and the history recorder
(and anything later) can use it without a try around each field:

* always: ``type`` (a known event type), ``hostname`` (the sender, a bounded string), ``host``
  (its label form: ``gen123@web-1`` -> ``web-1``), ``timestamp`` (a finite float, clamped into a
  window around the receiver's clock) and ``clock`` (an int or None);
* task events: ``uuid`` (a bounded string), and where the sender gave a usable value ``name``,
  ``queue`` (``queue`` or else ``routing_key``), ``exchange``, ``routing_key``, ``root_id``,
  ``parent_id``, ``retries``, ``runtime``, ``exception`` with ``exception_type``, ``traceback``,
  ``args``, ``kwargs``, ``result``, ``eta``, ``expires``;
* task-received: ``eta_at``, the ``eta`` text as epoch seconds where it is a usable ISO 8601
  time (a naive time is taken as UTC), within a schedule horizon of the event's time;
* worker events: the numbers of :data:`WORKER_NUMBERS`, ``sw_*`` and ``loadavg`` as text;
* ``worker-telemetry``: also the reliability settings the worker announces (workers/telemetry.py):
  ``visibility_timeout`` (seconds, > 0), ``acks_late`` (a bool) and ``time_limits`` (task name ->
  seconds > 0, at most :data:`MAX_TIME_LIMITS` entries; an unusable entry is left out);
* ``beat-sent``: ``name`` (required), ``task`` and ``interval_seconds``;
* ``beat-schedule``: ``entries``, a list of dicts with ``name`` (required), ``next_run``
  (required, epoch seconds), ``task``, ``interval_seconds``, ``last_run`` and
  ``total_run_count``; and ``complete``, true when the list is the whole schedule (nothing left
  out by the sender or here), the only case in which a consumer may forget an entry it lacks.

A field of the wrong type or out of range is left out and counted as a correction; an event
that cannot be used at all (no id, unknown type, not an object) raises :class:`Rejected`.
Texts are cut, never refused. Nothing here raises anything but :class:`Rejected`.

The checks are written out for speed: this runs for every event, and the exporter's budget is
a few microseconds per event (bench/exporter_throughput.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

from fleetops.task_faults import eta_epoch

# In the order the metrics render their counters.
TASK_EVENTS = (
    "task-sent",
    "task-received",
    "task-started",
    "task-succeeded",
    "task-failed",
    "task-retried",
    "task-rejected",
    "task-revoked",
)
TASK_TYPES = frozenset(TASK_EVENTS)
WORKER_TYPES = frozenset(
    ("worker-online", "worker-heartbeat", "worker-offline", "worker-telemetry")
)
BEAT_TYPES = frozenset(("beat-sent", "beat-schedule"))
KNOWN_TYPES = TASK_TYPES | WORKER_TYPES | BEAT_TYPES

UNKNOWN_EXCEPTION = "UnknownException"

# Why an event was refused: a closed set, so the metric's label stays bounded.
REJECT_REASONS = (
    "not_json",
    "bad_envelope",
    "bad_body",
    "not_an_object",
    "unknown_type",
    "missing_field",
    "bad_field",
    "internal_error",
)
# What was repaired in an event that was kept.
CORRECTION_REASONS = (
    "timestamp_missing",
    "timestamp_future",
    "timestamp_past",
    "bad_number",
    "bad_text",
    "text_cut",
    "entry_dropped",  # an unusable entry of a beat-schedule, the others kept
)


class Rejected(ValueError):
    """An event that cannot be used; ``reason`` is one of :data:`REJECT_REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class EventLimits:
    """Bounds every consumer relies on. Texts longer than a bound are cut with an ellipsis."""

    # The history's columns are as wide (exporters/history/schema.py).
    max_id_chars: int = 255  # uuid, root_id, parent_id
    max_name_chars: int = 255  # task names, queues, exchanges, routing keys
    max_hostname_chars: int = 255
    max_exception_chars: int = 16_384
    max_traceback_chars: int = 65_536
    max_payload_chars: int = 65_536  # args, kwargs, result
    # A sender's clock may run this far ahead of ours before its timestamps are not believed;
    # an event older than the past window (a broker queue kept for days) is dated now instead.
    max_future_seconds: float = 300.0
    max_past_seconds: float = 30 * 86_400.0
    # Beat sends at most 500 entries (workers/beat.py); a longer list is not from our Beat.
    max_beat_entries: int = 1000
    # A schedule's times may lie this far from the event's own time: a yearly crontab's next
    # or last run, with room to spare. Past it the sender's numbers are not believed.
    max_schedule_horizon_seconds: float = 400 * 86_400.0


DEFAULT_LIMITS = EventLimits()

_MAX_INT = 2**53  # exact in a float and in every database's BIGINT
_MAX_INT32 = 2**31 - 1  # the history's INTEGER columns
# field -> (is a float, upper bound); lower bound 0 for all of them.
WORKER_NUMBERS: dict[str, tuple[bool, float]] = {
    "pid": (False, _MAX_INT32),
    "freq": (True, 86_400.0),
    "active": (False, _MAX_INT32),
    "processed": (False, _MAX_INT),
    "pool_size": (False, 1_000_000),
    "rss_bytes": (False, _MAX_INT),
    "memory_limit_bytes": (False, _MAX_INT),
    "memory_percent": (True, 1_000_000.0),
}
# Fields that may come as any JSON value and are kept as text (JSON for a non-string).
_PAYLOAD_FIELDS = frozenset(("args", "kwargs", "result", "exception"))
_TASK_NUMBERS = {"retries": _MAX_INT32, "runtime": 1e9}
# A worker announces the time limit of each of its tasks; a fleet's app has far fewer.
MAX_TIME_LIMITS = 500
# Seconds: a visibility timeout or a time limit past ten years is no setting anyone made.
_MAX_SETTING_SECONDS = 10 * 366 * 86_400.0
_SOFTWARE = ("sw_ident", "sw_ver", "sw_sys")

_GENERATED = re.compile(r"^gen\d+@(.+)$")
# Lone surrogates (possible through a stdlib-JSON transport) cannot be written as UTF-8
# anywhere downstream; NUL is refused by PostgreSQL's text type.
_UNWRITABLE = re.compile("[\ud800-\udfff\x00]")
_EXCEPTION = re.compile(r"^\s*([\w.]+)\s*(?:\(|:|$)")
_CACHE_LIMIT = 20_000
_hostnames: dict[str, str] = {}


def hostname_label(node: str) -> str:
    """``celery@host`` stays as it is; ``gen123@host`` (a producer's process) becomes ``host``,
    so every short-lived producer process does not make a series of its own."""
    label = _hostnames.get(node)
    if label is None:
        match = _GENERATED.match(node)
        label = match.group(1) if match else node
        if len(_hostnames) >= _CACHE_LIMIT:
            _hostnames.clear()
        _hostnames[node] = label
    return label


def exception_type(text: object) -> str:
    """The class name out of ``ValueError('...')``, ``pkg.mod.Error: ...`` or ``KeyError``;
    ``UnknownException`` for text that does not start with one (``"Task timed out"``)."""
    if type(text) is not str:
        return UNKNOWN_EXCEPTION
    match = _EXCEPTION.match(text)
    if match is None:
        return UNKNOWN_EXCEPTION
    return match.group(1).rsplit(".", 1)[-1][:255] or UNKNOWN_EXCEPTION


class Checker:
    """``check(body, now)``: a checked event; corrections counted in ``corrections``."""

    def __init__(self, limits: EventLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.corrections: dict[str, int] = {}
        self._future = limits.max_future_seconds
        self._past = limits.max_past_seconds
        # Every task field read, in one table: a text's bound, or -1 for a number.
        self._task_fields = {
            **dict.fromkeys(("name", "queue", "exchange", "routing_key"), limits.max_name_chars),
            **dict.fromkeys(("root_id", "parent_id"), limits.max_id_chars),
            **dict.fromkeys(("args", "kwargs", "result"), limits.max_payload_chars),
            "exception": limits.max_exception_chars,
            "traceback": limits.max_traceback_chars,
            "eta": 64,
            "expires": 64,
            **dict.fromkeys(_TASK_NUMBERS, -1),
        }

    def _corrected(self, reason: str, amount: int = 1) -> None:
        self.corrections[reason] = self.corrections.get(reason, 0) + amount

    def text(self, value: object, limit: int) -> str | None:
        """A bounded, valid UTF-8 string without NUL, or None; cuts and repairs are counted."""
        if type(value) is not str:
            if value is None:
                return None
            self._corrected("bad_text")
            return None
        if (not value.isascii() or "\x00" in value) and _UNWRITABLE.search(value):
            value = _clean(value)
            self._corrected("bad_text")
        if len(value) > limit:
            self._corrected("text_cut")
            return value[: limit - 1] + "…"
        return value

    def payload(self, value: object, limit: int) -> str | None:
        """args/kwargs/result: Celery sends them as repr strings; anything else as JSON text."""
        if type(value) is str or value is None:
            return self.text(value, limit)
        try:
            rendered = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
        except (TypeError, ValueError):  # too deep, or not JSON-representable
            self._corrected("bad_text")
            return None
        return self.text(rendered, limit)

    def number(self, value: object, is_float: bool, upper: float) -> float | int | None:
        kind = type(value)
        if kind is int:
            if 0 <= value <= upper:  # type: ignore[operator]
                return float(value) if is_float else value  # type: ignore[arg-type]
        elif kind is float:
            # value - value is 0.0 for every finite float, NaN for inf and NaN.
            if value - value == 0.0 and 0.0 <= value <= upper:  # type: ignore[operator]
                return value if is_float else int(value)  # type: ignore[arg-type]
        elif value is None:
            return None
        self._corrected("bad_number")
        return None

    def check(self, body: object, now: float) -> dict:
        """The checked form of one event body received at wall-clock time ``now``."""
        if type(body) is not dict:
            raise Rejected("not_an_object", f"an event must be a JSON object, not {_kind(body)}")
        kind = body.get("type")
        if type(kind) is not str or kind not in KNOWN_TYPES:
            raise Rejected("unknown_type", f"event type {_short(kind)}")
        limits = self.limits
        # The common case of each field is checked inline, the rest by a call: this runs for
        # every event (bench/exporter_stages.py, "check + normalise").
        hostname = body.get("hostname")
        if type(hostname) is not str or not hostname:
            _required(hostname, kind, "hostname")  # raises
        if (
            len(hostname) > limits.max_hostname_chars
            or not hostname.isascii()
            or "\x00" in hostname
        ):
            hostname = self.text(hostname, limits.max_hostname_chars)
            if not hostname:
                raise Rejected("bad_field", f"{kind} with an unusable hostname")
        ts = body.get("timestamp")
        if kind == "beat-schedule":
            self._schedule_time(ts, now)  # refuses rather than repairs: before the repair
        if not (type(ts) is float and now - self._past <= ts <= now + self._future):
            ts = self.timestamp(ts, now)  # the rule; above, its common case without a call
        event: dict = {
            "type": kind,
            "hostname": hostname,
            "host": hostname_label(hostname),
            "timestamp": ts,
        }
        clock = body.get("clock")
        event["clock"] = clock if type(clock) is int and 0 <= clock < 2**63 else None
        if kind in TASK_TYPES:
            self._task(body, event, kind)
        elif kind == "beat-sent":
            name = self.text(body.get("name"), limits.max_name_chars)
            if not name:
                raise Rejected("missing_field", "beat-sent without a name")
            event["name"] = name
            task = self.text(body.get("task"), limits.max_name_chars)
            if task:
                event["task"] = task
            event["interval_seconds"] = self.number(body.get("interval_seconds"), True, 1e9)
        elif kind == "beat-schedule":
            self._beat_schedule(body, event, now)
        else:
            self._worker(body, event)
            if kind == "worker-telemetry":
                self._reliability(body, event)
        return event

    def timestamp(self, value: object, now: float) -> float:
        kind = type(value)
        if kind is float or (kind is int and -(2**62) < value < 2**62):  # type: ignore[operator]
            ts = float(value)  # type: ignore[arg-type]
            if ts - ts != 0.0:
                self._corrected("bad_number")
                return now
        elif value is None:
            self._corrected("timestamp_missing")
            return now
        else:
            self._corrected("bad_number")
            return now
        if ts > now + self._future:
            self._corrected("timestamp_future")
            return now
        if ts < now - self._past:
            self._corrected("timestamp_past")
            return now
        return ts

    def _task(self, body: dict, event: dict, kind: str) -> None:
        limits = self.limits
        uuid = body.get("uuid")
        if type(uuid) is not str or not uuid:
            _required(uuid, kind, "task id")  # raises
        if len(uuid) > limits.max_id_chars or not uuid.isascii() or "\x00" in uuid:
            raise Rejected("bad_field", f"{kind} with an unusable task id {_short(uuid)}")
        event["uuid"] = uuid
        # One pass over what the sender put in (a dozen fields), with the common case, a short
        # clean ASCII string, checked inline: this runs for every event (bench/exporter_stages.py).
        fields = self._task_fields
        for field, value in body.items():
            limit = fields.get(field)
            if limit is None:  # a field no consumer reads (pid, utcoffset...), or done above
                continue
            if limit < 0:  # a number: one lookup for both kinds of field
                number = self.number(value, field == "runtime", _TASK_NUMBERS[field])
                if number is not None:
                    event[field] = number
                continue
            if (
                type(value) is str
                and len(value) <= limit
                and value.isascii()
                and value
                and "\x00" not in value
            ):
                event[field] = value
                continue
            if value is None:
                continue
            if field in _PAYLOAD_FIELDS:
                value = self.payload(value, limit)
            else:
                value = self.text(value, limit)
            if value:
                event[field] = value
        if "queue" not in event and "routing_key" in event:
            event["queue"] = event["routing_key"]
        exception = event.get("exception")
        if exception is not None:
            event["exception_type"] = exception_type(exception)
        if kind == "task-received" and "eta" in event:
            eta = self.eta(event["eta"], event["timestamp"])
            if eta is not None:
                event["eta_at"] = eta

    def eta(self, text: str, sent: float) -> float | None:
        """An ETA as epoch seconds (task_faults.eta_epoch). Garbage, or a time further than the
        schedule horizon from ``sent``, is counted and None: a countdown of years is no
        countdown anyone meant."""
        at = eta_epoch(text)
        if at is None:
            self._corrected("bad_text")
            return None
        horizon = self.limits.max_schedule_horizon_seconds
        if not sent - horizon <= at <= sent + horizon:
            self._corrected("bad_number")
            return None
        return at

    def _schedule_time(self, sent: object, now: float) -> None:
        """A beat-schedule's times come from Beat's clock, so the whole event is refused when
        that clock is off by more than the future window, either way (or the event is that
        old): every next run in it would be as wrong. Not repaired, so not counted as such."""
        if type(sent) is not float and type(sent) is not int:
            raise Rejected("bad_field", f"beat-schedule whose timestamp is {_kind(sent)}")
        # Compared, not subtracted: an integer past a float's range must not raise here.
        if not now - self._future <= sent <= now + self._future:  # also false for NaN
            raise Rejected("bad_field", "beat-schedule from a clock far off ours, or stale")

    def _beat_schedule(self, body: dict, event: dict, now: float) -> None:
        """The schedule Beat announced (its timestamp checked by :meth:`_schedule_time`)."""
        sent = body["timestamp"]
        entries = body.get("entries")
        if entries is None:
            raise Rejected("missing_field", "beat-schedule without entries")
        if type(entries) is not list:
            raise Rejected("bad_field", f"beat-schedule whose entries are {_kind(entries)}")
        limit = self.limits.max_beat_entries
        if len(entries) > limit:
            raise Rejected("bad_field", f"beat-schedule of {len(entries)} entries (max {limit})")
        before = dict(self.corrections)  # a refused event is counted as refused, only
        checked = {}
        for entry in entries:
            usable = self._beat_entry(entry, float(sent))
            if usable is None:
                self._corrected("entry_dropped")
            else:
                checked[usable["name"]] = usable  # the same name twice: the last one
        if entries and not checked:
            self.corrections.clear()
            self.corrections.update(before)
            raise Rejected("bad_field", "beat-schedule without a usable entry")
        total = body.get("entries_total")
        event["entries"] = list(checked.values())
        event["complete"] = type(total) is int and total == len(entries) == len(checked)

    def _beat_entry(self, entry: object, sent: float) -> dict | None:
        if type(entry) is not dict:
            return None
        limits = self.limits
        name = self.text(entry.get("name"), limits.max_name_chars)
        horizon = limits.max_schedule_horizon_seconds
        next_run = self._epoch(entry.get("next_run"), sent - horizon, sent + horizon)
        if not name or next_run is None:
            return None
        checked: dict = {"name": name, "next_run": next_run}
        task = self.text(entry.get("task"), limits.max_name_chars)
        if task:
            checked["task"] = task
        interval = self.number(entry.get("interval_seconds"), True, 1e9)
        if interval:  # 0 is no interval: nothing could be late against it
            checked["interval_seconds"] = interval
        last_run = entry.get("last_run")
        if last_run is not None:
            last_run = self._epoch(last_run, sent - horizon, sent + self._future)
            if last_run is not None:
                checked["last_run"] = last_run
        runs = self.number(entry.get("total_run_count"), False, _MAX_INT)
        if runs is not None:
            checked["total_run_count"] = runs
        return checked

    def _epoch(self, value: object, earliest: float, latest: float) -> float | None:
        """A time in epoch seconds within [earliest, latest]; anything else counted, None."""
        if (type(value) is float or type(value) is int) and earliest <= value <= latest:
            return float(value)  # the bounds also refuse NaN and inf
        self._corrected("bad_number")
        return None

    def _worker(self, body: dict, event: dict) -> None:
        number = self.number
        for field, (is_float, upper) in WORKER_NUMBERS.items():
            value = body.get(field)
            if value is not None:
                value = number(value, is_float, upper)
                if value is not None:
                    event[field] = value
        for field in _SOFTWARE:
            value = body.get(field)
            if value is not None:
                value = self.text(value, 64)
                if value:
                    event[field] = value
        loadavg = body.get("loadavg")
        if loadavg is not None:
            if type(loadavg) is list and len(loadavg) <= 3:
                values = [number(v, True, 1e9) for v in loadavg]
                if None not in values:
                    event["loadavg"] = ",".join(f"{v:g}" for v in values)[:64]
            else:
                self._corrected("bad_number")

    def _reliability(self, body: dict, event: dict) -> None:
        """The reliability settings a worker announces with its telemetry: each one left out,
        and counted, when it is not what workers/telemetry.py sends."""
        timeout = body.get("visibility_timeout")
        if timeout is not None:
            timeout = self.number(timeout, True, _MAX_SETTING_SECONDS)
            if timeout:  # 0 is no timeout a transport has
                event["visibility_timeout"] = timeout
            elif timeout is not None:
                self._corrected("bad_number")
        acks_late = body.get("acks_late")
        if type(acks_late) is bool:
            event["acks_late"] = acks_late
        elif acks_late is not None:
            self._corrected("bad_number")  # a flag is a number of one bit
        limits = body.get("time_limits")
        if limits is None:
            return
        if type(limits) is not dict:
            self._corrected("bad_number")
            return
        checked: dict[str, float] = {}
        longest = self.limits.max_name_chars
        for name, seconds in limits.items():
            if len(checked) == MAX_TIME_LIMITS:
                # Not walked any further: the cut is counted as one drop per entry left out.
                self._corrected("entry_dropped", len(limits) - MAX_TIME_LIMITS)
                break
            # A cut or repaired name would name another task: such an entry is left out.
            if (
                type(name) is not str
                or not name
                or len(name) > longest
                or _UNWRITABLE.search(name)
                or not _is_seconds(seconds)
            ):
                self._corrected("entry_dropped")
                continue
            checked[name] = float(seconds)
        event["time_limits"] = checked


def _is_seconds(value: object) -> bool:
    """A positive, finite number of seconds within the bound of a setting (no bool)."""
    return (type(value) is float or type(value) is int) and 0 < value <= _MAX_SETTING_SECONDS


def _required(value: object, kind: str, what: str) -> str:
    """A field every event of its kind has: a non-empty string, or the event is rejected."""
    if type(value) is str and value:
        return value
    if value is None or value == "":
        raise Rejected("missing_field", f"{kind} without a {what}")
    raise Rejected("bad_field", f"{kind} whose {what} is {_kind(value)}")


def _clean(value: str) -> str:
    return _UNWRITABLE.sub("\ufffd", value)


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
