"""Property-based tests of the one event pipeline: whatever a message holds, decoding raises
only DecodeError, checking raises only Rejected, and what passes the checks can be applied to
the metrics state, merged into history rows and rendered, without a single error."""

from __future__ import annotations

import contextlib
import math
import time

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from exporters.history.merge import BatchMerger
from exporters.metrics.histogram import DEFAULT_BUCKETS, with_required
from exporters.metrics.queues import QueueSnapshot
from exporters.metrics.render import Extras, Renderer, Thresholds
from exporters.metrics.state import FleetState, Limits
from exporters.stream.envelope import DecodeError, decode
from exporters.stream.events import (
    DEFAULT_LIMITS,
    KNOWN_TYPES,
    REJECT_REASONS,
    TASK_TYPES,
    WORKER_NUMBERS,
    Checker,
    Rejected,
)
from exporters.stream.status import StreamStatus
from tests.stream.corpus import envelope

NOW = 1_790_000_000.0
# 200 examples a property keep the suite within 15 minutes on 2 cores; the hostile corpus runs
# every time and the fuzz soak on demand (FLEETOPS_FUZZ_SECONDS) for more.
PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# Anything JSON (and Python's json) can carry, hostile values included.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=3),
    st.sampled_from(["", "\x00", "inf", "NaN", "x" * 70_000]),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
NUMBER_FIELDS = ["clock", "retries", "runtime", "interval_seconds", *WORKER_NUMBERS]
TEXT_FIELDS = ["name", "queue", "routing_key", "exchange", "root_id", "parent_id", "exception",
               "traceback", "args", "kwargs", "result", "eta", "expires", "sw_ver",
               "loadavg"]  # fmt: skip
hostile_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([float("nan"), float("inf"), -0.0, 2**53, 2**63, "inf", "NaN", True]),
    json_values,
)
hostile_texts = st.one_of(
    st.text(max_size=300),
    st.sampled_from(
        [
            "celery@w1",
            "gen42@web-1",
            "app.add",
            "ValueError('x')",
            "x" * 70_000,
            "a\x00b",
            "\ud800",
            "Task timed out",
            "",
        ]
    ),
    json_values,
)
near_valid_events = st.fixed_dictionaries(
    {
        "type": st.one_of(st.sampled_from(sorted(KNOWN_TYPES)), json_values),
        "hostname": st.one_of(st.sampled_from(["celery@w1", "gen42@web-1"]), hostile_texts),
        "uuid": st.one_of(st.sampled_from(["t1", "t2", "t3"]), hostile_texts),
        "timestamp": st.one_of(st.floats(min_value=NOW - 60, max_value=NOW + 60), hostile_numbers),
    },
    optional={
        **{field: hostile_numbers for field in NUMBER_FIELDS},
        **{field: hostile_texts for field in TEXT_FIELDS},
    },
)
bodies = st.one_of(near_valid_events, json_values)


def _assert_checked(event: dict) -> None:
    limits = DEFAULT_LIMITS
    assert event["type"] in KNOWN_TYPES
    assert 0 < len(event["hostname"]) <= limits.max_hostname_chars
    assert isinstance(event["host"], str) and event["host"]
    ts = event["timestamp"]
    assert type(ts) is float and math.isfinite(ts)
    assert NOW - limits.max_past_seconds <= ts <= NOW + limits.max_future_seconds
    assert event["clock"] is None or (type(event["clock"]) is int and event["clock"] >= 0)
    if event["type"] in TASK_TYPES:
        assert type(event["uuid"]) is str and 0 < len(event["uuid"]) <= limits.max_id_chars
    for key, value in event.items():
        if isinstance(value, str):
            value.encode("utf-8")  # no lone surrogate left
            assert "\x00" not in value, key
            assert len(value) <= limits.max_traceback_chars, key
        elif isinstance(value, float):
            assert math.isfinite(value), key
        elif isinstance(value, int) and not isinstance(value, bool):
            assert 0 <= value < 2**63, key
        else:
            assert value is None, key
    orjson.dumps(event)  # what the recorder's disk spool writes


@PROPERTY_SETTINGS
@given(bodies)
def test_checking_any_body_gives_a_checked_event_or_a_counted_rejection(body: object) -> None:
    checker = Checker()
    try:
        event = checker.check(body, NOW)
    except Rejected as exc:
        assert exc.reason in REJECT_REASONS
        return
    _assert_checked(event)


@PROPERTY_SETTINGS
@given(st.binary(max_size=300) | bodies.map(envelope))
def test_decoding_any_message_raises_only_decode_error(payload: bytes) -> None:
    try:
        decoded = decode(payload)
    except DecodeError as exc:
        assert exc.reason in REJECT_REASONS
        return
    assert isinstance(decoded, list)


@PROPERTY_SETTINGS
@given(st.lists(near_valid_events, max_size=40))
def test_checked_events_apply_merge_and_render_without_an_error(raw: list[dict]) -> None:
    checker = Checker()
    events = []
    for body in raw:
        with contextlib.suppress(Rejected):
            events.append(checker.check(body, NOW))
    state = FleetState(
        bounds=with_required(DEFAULT_BUCKETS, (300.0,)),
        limits=Limits(max_queues=2, max_task_names=2, max_hostnames=2, max_exceptions=1),
    )
    state.apply_all(events, now=1.0)
    state.housekeeping(now=10.0)  # releases parked events too
    assert state.internal_errors == 0
    assert sum(state.events_by_type.values()) == len(events)
    # The label caps hold whatever the names were.
    assert len({key[0] for key in state.task_series}) <= 2 + 2  # + unknown and overflow
    merger = BatchMerger()
    merger.add_all(events)
    assert merger.malformed == 0
    assert set(merger.tasks) == {e["uuid"] for e in events if e["type"] in TASK_TYPES}
    extras = Extras(StreamStatus(), QueueSnapshot(), {}, 0, 0.0, Thresholds())
    text = "".join(Renderer().render(state, extras, 10.0, time.time()))
    families = list(text_string_to_metric_families(text))
    assert families
