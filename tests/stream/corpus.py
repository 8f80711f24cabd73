"""A corpus of hostile messages for the event pipeline, each labelled with what must happen to it.

Every entry is the raw payload of one Redis pub/sub message (a kombu envelope, or something
that only pretends to be one) and what the pipeline must do with it: the rejection reasons of
the events it carries (``rejected``), how many of its events are usable (``accepted``) and the
repairs made to those (``corrected``). The labels are written by hand from the rules in
docs/exporter.md, not computed with the checker, so a checker that drifts fails the tests.
"""

from __future__ import annotations

import base64
import json
import math
import time
from dataclasses import dataclass, field

import orjson


@dataclass
class Case:
    name: str
    payload: bytes
    rejected: dict[str, int] = field(default_factory=dict)
    accepted: int = 0
    corrected: dict[str, int] = field(default_factory=dict)


def envelope_of_text(body_json: str | bytes) -> bytes:
    """A kombu envelope whose base64 body is exactly this JSON text."""
    raw = body_json.encode() if isinstance(body_json, str) else body_json
    return orjson.dumps(
        {
            "body": base64.b64encode(raw).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {"hostname": "fuzz@corpus"},
            "properties": {"body_encoding": "base64", "delivery_info": {"exchange": "celeryev"}},
        }
    )


def envelope(body: object) -> bytes:
    # The standard library, as kombu's json serialiser: integers past 64 bits, NaN, Infinity
    # and lone surrogates (as \ud800 escapes) come out the way a Python producer sends them.
    return envelope_of_text(json.dumps(body))


def corpus(now: float | None = None) -> list[Case]:
    now = time.time() if now is None else now
    worker = "celery@corpus"
    sent = {"type": "task-sent", "hostname": "gen1@corpus", "timestamp": now, "clock": 1,
            "name": "corpus.task", "queue": "corpus"}  # fmt: skip

    entry = {"name": "corpus-entry", "task": "corpus.task", "interval_seconds": 60.0,
             "next_run": now + 60, "last_run": None}  # fmt: skip
    schedule = {"type": "beat-schedule", "hostname": "beat@corpus", "timestamp": now,
                "entries": [entry], "entries_total": 1}  # fmt: skip

    def repaired(case: str, reason: str, /, **fields: object) -> Case:
        """A task-sent event with ``fields``, usable once one of them is repaired for ``reason``."""
        return Case(case, envelope({**sent, **fields}), accepted=1, corrected={reason: 1})

    cases = [
        # -- not a message at all
        Case("empty payload", b"", {"not_json": 1}),
        Case("not JSON", b"\x00\xff garbage", {"not_json": 1}),
        Case("JSON array envelope", b"[1, 2, 3]", {"bad_envelope": 1}),
        Case("no body", b'{"no": "body"}', {"bad_envelope": 1}),
        Case(
            "pickle",
            b'{"body": "gAQ=", "content-type": "application/x-python-serialize"}',
            {"bad_envelope": 1},
        ),
        Case(
            "bad base64",
            b'{"body": "%%%", "properties": {"body_encoding": "base64"}}',
            {"bad_body": 1},
        ),
        Case(
            "unknown body encoding",
            b'{"body": "x", "properties": {"body_encoding": "rot13"}}',
            {"bad_body": 1},
        ),
        Case("empty body", envelope_of_text(b""), {"not_json": 1}),
        Case("body not JSON", envelope_of_text(b"{nope"), {"not_json": 1}),
        Case("body a number", envelope(42), {"bad_body": 1}),
        Case("deep nesting", envelope_of_text("[" * 100_000 + "]" * 100_000), {"not_json": 1}),
        Case("oversized message", b"{" + b" " * (16 * 1024 * 1024) + b"}", {"bad_envelope": 1}),
        # -- events that cannot be used
        Case("no type", envelope({"hostname": worker, "uuid": "x"}), {"unknown_type": 1}),
        Case(
            "made-up type", envelope({"type": "made-up", "hostname": worker}), {"unknown_type": 1}
        ),
        Case(
            "no hostname", envelope({"type": "task-succeeded", "uuid": "x"}), {"missing_field": 1}
        ),
        Case(
            "hostname a number",
            envelope({"type": "worker-heartbeat", "hostname": 7}),
            {"bad_field": 1},
        ),
        Case("uuid an object", envelope({**sent, "uuid": {"a": 1}}), {"bad_field": 1}),
        Case("uuid an integer", envelope({**sent, "uuid": 12345}), {"bad_field": 1}),
        Case("uuid missing", envelope({**sent}), {"missing_field": 1}),
        Case("uuid huge", envelope({**sent, "uuid": "u" * 10_000}), {"bad_field": 1}),
        Case(
            "beat without a name",
            envelope({"type": "beat-sent", "hostname": "beat@corpus"}),
            {"missing_field": 1},
        ),
        Case(
            "beat schedule from a clock an hour ahead",
            envelope({**schedule, "timestamp": now + 3600}),
            {"bad_field": 1},
        ),
        Case(
            "beat schedule whose entries are a string",
            envelope({**schedule, "entries": "x" * 1000}),
            {"bad_field": 1},
        ),
        Case(
            "beat schedule of 5,000 entries",
            envelope({**schedule, "entries": [entry] * 5000}),
            {"bad_field": 1},
        ),
        Case(
            "beat schedule with a NaN next run beside a good entry",
            envelope(
                {**schedule, "entries": [entry, {**entry, "name": "b", "next_run": math.nan}]}
            ),
            accepted=1,
            corrected={"bad_number": 1, "entry_dropped": 1},
        ),
        Case(
            "junk in task.multi",
            envelope(
                [
                    42,
                    "x",
                    None,
                    [1],
                    {
                        "type": "task-started",
                        "hostname": worker,
                        "uuid": "multi-ok",
                        "timestamp": now,
                    },
                ]
            ),
            {"not_an_object": 4},
            accepted=1,
        ),
        # -- usable events with fields that must be repaired
        Case(
            "pool_size the string inf",
            envelope(
                {
                    "type": "worker-telemetry",
                    "hostname": worker,
                    "timestamp": now,
                    "pool_size": "inf",
                    "rss_bytes": 10**40,
                    "memory_percent": -3.0,
                }
            ),
            accepted=1,
            corrected={"bad_number": 3},
        ),
        Case(
            "Infinity and NaN as kombu's json writes them",
            envelope_of_text(
                f'{{"type": "worker-telemetry", "hostname": "{worker}", "timestamp": {now!r},'
                ' "memory_percent": Infinity, "rss_bytes": NaN}'
            ),
            accepted=1,
            corrected={"bad_number": 2},
        ),
        Case(
            "reliability settings of the wrong kinds",
            envelope_of_text(
                f'{{"type": "worker-telemetry", "hostname": "{worker}", "timestamp": {now!r},'
                ' "visibility_timeout": NaN, "acks_late": "yes",'
                ' "time_limits": {"corpus.task": -1, "corpus.ok": 5, "": 5}}'
            ),
            accepted=1,
            corrected={"bad_number": 2, "entry_dropped": 2},
        ),
        Case(
            "time limits of a thousand tasks",
            envelope(
                {
                    "type": "worker-telemetry",
                    "hostname": worker,
                    "timestamp": now,
                    "time_limits": {f"corpus.t{i}": 60 for i in range(1000)},
                }
            ),
            accepted=1,
            corrected={"entry_dropped": 500},
        ),
        Case(
            "ETA that is no time",
            envelope(
                {
                    "type": "task-received",
                    "hostname": worker,
                    "uuid": "eta-garbage",
                    "timestamp": now,
                    "eta": "9999-99-99T99:99:99",
                }
            ),
            accepted=1,
            corrected={"bad_text": 1},
        ),
        repaired(
            "timestamp far in the future",
            "timestamp_future",
            uuid="future-1",
            timestamp=253402300800.0,
        ),
        repaired("timestamp 1e300", "timestamp_future", uuid="future-2", timestamp=1e300),
        repaired("timestamp before 1970", "timestamp_past", uuid="past-1", timestamp=-5),
        repaired("timestamp a string", "bad_number", uuid="ts-text", timestamp="soon"),
        Case(
            "40-digit runtime",
            envelope(
                {
                    "type": "task-succeeded",
                    "hostname": worker,
                    "uuid": "big-runtime",
                    "timestamp": now,
                    "runtime": 10**40,
                }
            ),
            accepted=1,
            corrected={"bad_number": 1},
        ),
        Case(
            "giant exception and traceback",
            envelope(
                {
                    "type": "task-failed",
                    "hostname": worker,
                    "uuid": "giant-failure",
                    "timestamp": now,
                    "exception": "ValueError('" + "x" * 100_000 + "')",
                    "traceback": "t" * 200_000,
                }
            ),
            accepted=1,
            corrected={"text_cut": 2},
        ),
        repaired("task name a list", "bad_text", uuid="name-list", name=["a"]),
        Case(
            "lone surrogate in a name",
            envelope_of_text(
                '{"type": "task-sent", "hostname": "gen1@corpus", "uuid":'
                f' "surrogate", "timestamp": {now!r}, "name": "bad\\ud800name",'
                ' "queue": "corpus"}'
            ),
            accepted=1,
            corrected={"bad_text": 1},
        ),
        repaired("args nested too deep to render", "bad_text", uuid="deep-args", args=_nested(500)),
        repaired("NUL in a queue name", "bad_text", uuid="nul-queue", queue="a\x00b"),
    ]
    return cases


def _nested(depth: int) -> object:
    value: object = []
    for _ in range(depth):
        value = [value]
    return value


def expected(cases: list[Case]) -> tuple[dict[str, int], int, dict[str, int]]:
    rejected: dict[str, int] = {}
    corrected: dict[str, int] = {}
    accepted = 0
    for case in cases:
        accepted += case.accepted
        for reason, count in case.rejected.items():
            rejected[reason] = rejected.get(reason, 0) + count
        for reason, count in case.corrected.items():
            corrected[reason] = corrected.get(reason, 0) + count
    return rejected, accepted, corrected
