"""Beat's schedule announcements (beat-schedule events) in the checker, the state and the
metrics: every entry is known before its first run, hostile announcements are counted and
refused without losing what earlier ones said, and entries leave only when the schedule drops
them."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporters.metrics.histogram import DEFAULT_BUCKETS
from exporters.metrics.state import FleetState, Limits
from exporters.stream.events import CORRECTION_REASONS, REJECT_REASONS, Checker, Rejected
from tests.exporter.process import rendered, value

NOW = 1_790_000_000.0
ENTRY = {
    "name": "due-soon-reminders",
    "task": "reminders.send_due_soon",
    "interval_seconds": 3600.0,
    "next_run": NOW + 3000.0,
    "last_run": None,
    "total_run_count": 0,
}


def announcement(*entries: dict, total: int | None = None, **fields: object) -> dict:
    return {
        "type": "beat-schedule",
        "hostname": "beat@host",
        "timestamp": NOW,
        "clock": 3,
        "entries": list(entries),
        "entries_total": len(entries) if total is None else total,
        **fields,
    }


def render(state: FleetState) -> dict:
    return rendered(state, now=0.0, wall=NOW)


def test_an_entry_is_reported_before_its_first_run() -> None:
    state = FleetState(bounds=DEFAULT_BUCKETS)
    state.apply_all([Checker().check(announcement(ENTRY), NOW)], now=0.0)
    samples = render(state)
    name = {"name": "due-soon-reminders"}
    assert value(samples, "fleetops_beat_next_run_timestamp_seconds", **name) == NOW + 3000
    assert value(samples, "fleetops_beat_interval_seconds", **name) == 3600
    info = {**name, "task": "reminders.send_due_soon"}
    assert value(samples, "fleetops_beat_entry_info", **info) == 1
    # Never run: no last run at all, rather than a 0 that would read as "1970, very late".
    assert value(samples, "fleetops_beat_last_run_timestamp_seconds", **name) is None

    # Its first run moves the next one on by an interval until the next announcement.
    sent = {"type": "beat-sent", "hostname": "beat@host", "timestamp": NOW + 3000.5,
            "name": "due-soon-reminders", "task": "reminders.send_due_soon",
            "interval_seconds": 3600.0}  # fmt: skip
    state.apply_all([Checker().check(sent, NOW + 3001)], now=1.0)
    samples = render(state)
    assert value(samples, "fleetops_beat_last_run_timestamp_seconds", **name) == NOW + 3000.5
    assert value(samples, "fleetops_beat_next_run_timestamp_seconds", **name) == NOW + 6600.5


def test_a_persistent_schedule_says_the_last_run_an_exporter_started_later_missed() -> None:
    state = FleetState(bounds=DEFAULT_BUCKETS)
    ran = {**ENTRY, "last_run": NOW - 600.0, "total_run_count": 7}
    state.apply_all([Checker().check(announcement(ran), NOW)], now=0.0)
    samples = render(state)
    last = value(samples, "fleetops_beat_last_run_timestamp_seconds", name="due-soon-reminders")
    assert last == NOW - 600


def bad(field: str, bad_value: object) -> dict:
    return {**ENTRY, "name": f"bad-{field}", field: bad_value}


REFUSED = [
    ("no entries", {**announcement(), "entries": None}, "missing_field"),
    ("entries a string", announcement(entries="x" * 100), "bad_field"),
    ("entries an object", announcement(entries={"a": ENTRY}), "bad_field"),
    ("a huge list", announcement(*[ENTRY] * 5000), "bad_field"),
    ("clock an hour ahead", announcement(ENTRY, timestamp=NOW + 3600), "bad_field"),
    ("clock an hour behind (or a stale event)", announcement(ENTRY, timestamp=NOW - 3600),
     "bad_field"),
    ("timestamp NaN", announcement(ENTRY, timestamp=math.nan), "bad_field"),
    ("timestamp inf", announcement(ENTRY, timestamp=math.inf), "bad_field"),
    ("timestamp past a float", announcement(ENTRY, timestamp=10**400), "bad_field"),
    ("timestamp a string", announcement(ENTRY, timestamp=str(NOW)), "bad_field"),
    ("timestamp missing", {**announcement(ENTRY), "timestamp": None}, "bad_field"),
    ("no usable entry", announcement(bad("next_run", math.nan), 42, None), "bad_field"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "body", "reason"), REFUSED, ids=[c[0] for c in REFUSED])
def test_hostile_announcements_are_refused_and_earlier_entries_kept(
    case: str, body: dict, reason: str
) -> None:
    checker = Checker()
    state = FleetState(bounds=DEFAULT_BUCKETS)
    state.apply_all([checker.check(announcement(ENTRY), NOW)], now=0.0)
    with pytest.raises(Rejected) as refused:
        checker.check(body, NOW)
    assert refused.value.reason == reason
    # Counted once, as refused: not also as repaired (a far-off timestamp, dropped entries).
    assert not checker.corrections
    # A complete announcement that came through would have left the entry out.
    state.housekeeping(now=10**9)
    assert list(state.beat) == ["due-soon-reminders"]
    assert state.beat["due-soon-reminders"].next_run == NOW + 3000


DROPPED = [
    ("next run NaN", bad("next_run", math.nan), "bad_number"),
    ("next run inf", bad("next_run", math.inf), "bad_number"),
    ("next run ten years on", bad("next_run", NOW + 10 * 365 * 86_400), "bad_number"),
    ("next run past a float", bad("next_run", 10**400), "bad_number"),
    ("next run a string", bad("next_run", "soon"), "bad_number"),
    ("next run true", bad("next_run", True), "bad_number"),
    ("next run missing", {k: v for k, v in bad("x", 0).items() if k != "next_run"},
     "bad_number"),
    ("name a number", {**ENTRY, "name": 7}, "bad_text"),
    ("entry a string", "due-soon-reminders", None),
]  # fmt: skip


@pytest.mark.parametrize(("case", "entry", "reason"), DROPPED, ids=[c[0] for c in DROPPED])
def test_an_unusable_entry_is_dropped_and_counted_the_others_kept(
    case: str, entry: object, reason: str | None
) -> None:
    checker = Checker()
    other = {**ENTRY, "name": "nightly-cleanup"}
    event = checker.check(announcement(other, entry), NOW)
    assert [e["name"] for e in event["entries"]] == ["nightly-cleanup"]
    assert checker.corrections["entry_dropped"] == 1
    if reason is not None:
        assert checker.corrections[reason] >= 1
    # One entry is missing from what Beat sent: nothing may be forgotten on its word.
    assert event["complete"] is False


def test_hostile_fields_of_a_usable_entry_are_left_out() -> None:
    checker = Checker()
    entry = {**ENTRY, "interval_seconds": math.inf, "last_run": math.nan, "task": ["x"],
             "total_run_count": -1}  # fmt: skip
    [checked] = checker.check(announcement(entry), NOW)["entries"]
    assert checked == {"name": "due-soon-reminders", "next_run": NOW + 3000}
    assert checker.corrections == {"bad_number": 3, "bad_text": 1}


def test_entries_leave_only_when_complete_announcements_leave_them_out() -> None:
    limits = Limits(purge_offline_after=600)
    state = FleetState(bounds=DEFAULT_BUCKETS, limits=limits)
    checker = Checker()
    nightly = {**ENTRY, "name": "nightly-cleanup"}
    state.apply_all([checker.check(announcement(ENTRY, nightly), NOW)], now=0.0)
    series = state.series_count
    # Beat announced a cut list (more entries than it sends): nothing is forgotten.
    state.apply_all([checker.check(announcement(ENTRY, total=900), NOW)], now=10.0)
    state.housekeeping(now=10_000.0)
    assert set(state.beat) == {"due-soon-reminders", "nightly-cleanup"}
    # Silence (a dead Beat) forgets nothing either: its missed runs must go on showing.
    state.housekeeping(now=100_000.0)
    assert set(state.beat) == {"due-soon-reminders", "nightly-cleanup"}
    # The whole schedule without nightly-cleanup: forgotten once purge_offline_after passed.
    state.apply_all([checker.check(announcement(ENTRY), NOW)], now=100_000.0)
    state.housekeeping(now=100_000.0 + 599)
    assert "nightly-cleanup" in state.beat
    state.housekeeping(now=100_000.0 + 601)
    assert set(state.beat) == {"due-soon-reminders"}
    assert state.series_count < series
    next_runs = render(state)
    gone = {"name": "nightly-cleanup"}
    assert value(next_runs, "fleetops_beat_next_run_timestamp_seconds", **gone) is None

    # Back in the schedule before the purge: kept.
    state.apply_all([checker.check(announcement(ENTRY), NOW)], now=200_000.0)
    state.apply_all([checker.check(announcement(ENTRY, nightly), NOW)], now=200_100.0)
    state.housekeeping(now=300_000.0)
    assert set(state.beat) == {"due-soon-reminders", "nightly-cleanup"}


hostile = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=NOW - 500 * 86_400, max_value=NOW + 500 * 86_400),
    st.text(max_size=20),
    st.sampled_from(["", "\x00", "\ud800", "x" * 1000]),
    st.lists(st.integers(), max_size=2),
)
entries = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "name": st.one_of(st.sampled_from(["a", "b", "due-soon-reminders"]), hostile),
            "task": hostile,
            "interval_seconds": hostile,
            "next_run": hostile,
            "last_run": hostile,
            "total_run_count": hostile,
        },
    ),
    hostile,
)
bodies = st.fixed_dictionaries(
    {
        "type": st.just("beat-schedule"),
        "hostname": st.just("beat@host"),
        "timestamp": st.one_of(st.floats(min_value=NOW - 400, max_value=NOW + 400), hostile),
    },
    optional={
        "entries": st.one_of(st.lists(entries, max_size=6), hostile),
        "entries_total": hostile,
        "clock": hostile,
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(bodies, min_size=1, max_size=4))
def test_any_announcement_is_refused_with_a_reason_or_applied_without_error(
    bodies_: list[dict],
) -> None:
    checker = Checker()
    state = FleetState(bounds=DEFAULT_BUCKETS)
    state.apply_all([checker.check(announcement(ENTRY), NOW)], now=0.0)
    for body in bodies_:
        try:
            event = checker.check(body, NOW)
        except Rejected as exc:
            assert exc.reason in REJECT_REASONS
            continue
        for entry in event["entries"]:
            assert abs(entry["next_run"] - NOW) <= 400 * 86_400 + 300
            for key, number in entry.items():
                if isinstance(number, float):
                    assert math.isfinite(number), key
        state.apply_all([event], now=1.0)
    assert set(checker.corrections) <= set(CORRECTION_REASONS)
    assert state.internal_errors == 0
    assert "due-soon-reminders" in state.beat  # only a purge, much later, could drop it
    render(state)
