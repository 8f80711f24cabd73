"""Orphaned, stuck and twice-run tasks and the visibility-timeout trap, in the exporter's state
and on /metrics, from hand-written (and hostile) events fed through the checker; the real fleet
shows the same in tests/exporter/test_task_faults.py."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from exporters.metrics.app import latency_breaking_points
from exporters.metrics.histogram import DEFAULT_BUCKETS, with_required
from exporters.metrics.settings import load
from exporters.metrics.state import MAX_RUNNING_PER_WORKER, Limits
from exporters.stream.events import MAX_TIME_LIMITS, Checker
from fleetops import task_faults
from fleetops.errors import ConfigError
from tests.exporter.process import rendered, value
from tests.stream.checked import CheckedFleetState as FleetState

BOUNDS = with_required(DEFAULT_BUCKETS, latency_breaking_points())
T0 = 1_790_000_000.0  # the workers' clock (epoch seconds); the exporter's is monotonic ``now``
PAIR = {"name": "app.long", "queue_name": "slow"}


def task(kind: str, uuid: str, ts: float, host: str = "celery@w1", **fields: object) -> dict:
    return {"type": kind, "uuid": uuid, "hostname": host, "timestamp": ts, "clock": 1, **fields}


def sent(uuid: str, ts: float = T0) -> dict:
    return task("task-sent", uuid, ts, host="gen1@web", name="app.long", queue="slow")


def worker(kind: str, host: str = "celery@w1", ts: float = T0, **fields: object) -> dict:
    return {"type": kind, "hostname": host, "timestamp": ts, "clock": 1, **fields}


def telemetry(host: str = "celery@w1", **fields: object) -> dict:
    return worker("worker-telemetry", host, **fields)


def started_on(state: FleetState, uuid: str, host: str, now: float, ts: float = T0 + 1) -> None:
    state.apply_all([sent(uuid), task("task-received", uuid, ts, host, name="app.long")], now)
    state.apply_all([task("task-started", uuid, ts + 0.5, host)], now)


def metrics(state: FleetState, now: float) -> dict:
    return rendered(state, now=now, wall=T0 + now)


def counter(samples: dict, metric: str, **labels: str) -> float | None:
    return value(samples, metric, **PAIR, **labels)


def test_a_second_start_in_one_attempt_is_a_twice_run_and_a_duplicate_is_not() -> None:
    state = FleetState(bounds=BOUNDS)
    started_on(state, "t1", "celery@w1", now=1.0)
    assert counter(metrics(state, 1.0), "fleetops_task_runs_repeated_total") == 0  # at 0 first
    again = task("task-started", "t1", T0 + 9, host="celery@w2")
    state.apply_all([again], now=2.0)
    state.apply_all([task("task-started", "t1", T0 + 1.5)], now=2.0)  # the first start again
    state.apply_all([again], now=2.0)  # and the second
    samples = metrics(state, 2.0)
    assert counter(samples, "fleetops_task_runs_repeated_total") == 1
    assert state.anomalies["duplicate"] == 2
    # It runs on w2 now, and only there.
    assert "t1" in state.running["celery@w2"] and "t1" not in state.running["celery@w1"]
    # After its end, a third copy starts: still its name and queue, a third run.
    state.apply_all([task("task-succeeded", "t1", T0 + 10, host="celery@w2", runtime=1.0)], 3.0)
    state.apply_all([task("task-started", "t1", T0 + 20, host="celery@w3")], now=4.0)
    samples = metrics(state, 4.0)
    assert counter(samples, "fleetops_task_runs_repeated_total") == 2
    assert "unknown_task" not in state.anomalies
    # Its second end is counted as the end of a run of that task, not of an unknown one.
    state.apply_all([task("task-succeeded", "t1", T0 + 21, host="celery@w3", runtime=1.0)], 5.0)
    assert "unknown_task" not in state.anomalies and not state.running["celery@w3"]


def test_a_retry_and_exact_duplicates_are_no_twice_runs() -> None:
    state = FleetState(bounds=BOUNDS)
    lifecycle = [
        sent("t1"),
        task("task-received", "t1", T0 + 1, name="app.long"),
        task("task-started", "t1", T0 + 2),
        task("task-retried", "t1", T0 + 3, exception="TransientError()"),
        task("task-received", "t1", T0 + 4, name="app.long"),
        task("task-started", "t1", T0 + 5),
        task("task-succeeded", "t1", T0 + 6, runtime=1.0),
    ]
    state.apply_all([*lifecycle, *lifecycle], now=1.0)  # every event twice, in a row
    samples = metrics(state, 1.0)
    assert counter(samples, "fleetops_task_runs_repeated_total") == 0
    assert state.anomalies["duplicate"] == len(lifecycle)
    assert not state.running["celery@w1"] and not state.orphans


def test_a_restarted_worker_orphans_its_tasks_until_another_starts_them() -> None:
    state = FleetState(bounds=BOUNDS)
    state.apply_all([worker("worker-online", pid=10, processed=0)], now=0.0)
    state.apply_all([telemetry(visibility_timeout=6.0, acks_late=True)], now=0.0)
    started_on(state, "t1", "celery@w1", now=1.0)
    state.apply_all([worker("worker-online", pid=11, processed=0)], now=2.0)  # a new process
    samples = metrics(state, 2.0)
    assert counter(samples, "fleetops_tasks_orphaned") == 1
    assert counter(samples, "fleetops_task_orphans_total", outcome="redelivered") == 0
    assert counter(samples, "fleetops_task_running_longest_seconds") is None  # not running
    # Sticky: the new process is heard again, the task is still an orphan.
    state.apply_all([worker("worker-heartbeat", ts=T0 + 5, pid=11, processed=0)], now=3.0)
    state.housekeeping(3.0)
    assert counter(metrics(state, 3.0), "fleetops_tasks_orphaned") == 1
    state.apply_all([task("task-started", "t1", T0 + 8, host="celery@w2")], now=4.0)
    samples = metrics(state, 4.0)
    assert counter(samples, "fleetops_tasks_orphaned") == 0
    assert counter(samples, "fleetops_task_orphans_total", outcome="redelivered") == 1
    assert counter(samples, "fleetops_task_orphans_total", outcome="lost") == 0
    assert counter(samples, "fleetops_task_runs_repeated_total") == 1
    state.housekeeping(1000.0)  # long past any window: a redelivered task is never lost too
    assert counter(metrics(state, 1000.0), "fleetops_task_orphans_total", outcome="lost") == 0


def test_a_silent_worker_orphans_its_tasks_and_an_orphan_not_started_again_is_lost() -> None:
    limits = Limits(worker_timeout=10.0, purge_offline_after=0)
    state = FleetState(bounds=BOUNDS, limits=limits)
    state.apply_all([telemetry(visibility_timeout=6.0, acks_late=True)], now=0.0)
    state.apply_all([telemetry("celery@w2", visibility_timeout=6.0, acks_late=True)], now=0.0)
    started_on(state, "t1", "celery@w1", now=1.0)
    state.housekeeping(9.0)
    assert counter(metrics(state, 9.0), "fleetops_tasks_orphaned") == 0
    state.apply_all([worker("worker-heartbeat", "celery@w2")], now=10.5)
    state.housekeeping(10.5)  # w1 silent for 10.5 s, past the timeout
    assert counter(metrics(state, 10.5), "fleetops_tasks_orphaned") == 1
    window = task_faults.redelivery_window(6.0, True)
    state.apply_all([worker("worker-heartbeat", "celery@w2")], now=10.5 + window - 1)
    state.housekeeping(10.5 + window - 1)
    assert counter(metrics(state, 10.5 + window - 1), "fleetops_tasks_orphaned") == 1
    state.housekeeping(10.5 + window)
    # Past its window, but its silent process may still run it: not lost until it is gone.
    samples = metrics(state, 10.5 + window)
    assert counter(samples, "fleetops_tasks_orphaned") == 1
    assert counter(samples, "fleetops_task_orphans_total", outcome="lost") == 0
    later = 10.5 + window + 5
    state.apply_all([worker("worker-online", ts=T0 + later)], now=later)  # a new process of w1
    state.housekeeping(later)
    samples = metrics(state, later)
    assert counter(samples, "fleetops_tasks_orphaned") == 0
    assert counter(samples, "fleetops_task_orphans_total", outcome="lost") == 1
    # A late start after all: a twice-run, but the orphan was counted once, as lost.
    state.apply_all([task("task-started", "t1", T0 + 99, host="celery@w2")], now=100.0)
    samples = metrics(state, 100.0)
    assert counter(samples, "fleetops_task_orphans_total", outcome="redelivered") == 0
    assert counter(samples, "fleetops_task_runs_repeated_total") == 1


def test_without_acks_late_an_orphan_is_lost_at_once_and_a_restart_orphans_too() -> None:
    state = FleetState(bounds=BOUNDS)
    state.apply_all([telemetry(visibility_timeout=6.0, acks_late=False)], now=0.0)
    started_on(state, "t1", "celery@w1", now=1.0)
    state.apply_all([worker("worker-online", ts=T0 + 3)], now=2.0)  # restarted, same name
    samples = metrics(state, 2.0)
    assert counter(samples, "fleetops_tasks_orphaned") == 0
    assert counter(samples, "fleetops_task_orphans_total", outcome="lost") == 1


def test_a_reconnect_keeps_the_tasks_running_and_a_restart_orphans_them() -> None:
    state = FleetState(bounds=BOUNDS, limits=Limits(worker_timeout=1e6))
    state.apply_all([worker("worker-heartbeat", pid=40, processed=7)], now=0.0)
    started_on(state, "t1", "celery@w1", now=1.0)
    # Its consumer reconnected to the broker: the same process, still running the task.
    state.apply_all([worker("worker-online", pid=40, processed=8, active=1)], now=2.0)
    samples = metrics(state, 2.0)
    assert counter(samples, "fleetops_tasks_orphaned") == 0
    assert counter(samples, "fleetops_task_running_longest_seconds") == 1.0  # still running
    # Restarted in a container: pid 1 again, but its count of tasks starts over.
    state.apply_all([worker("worker-heartbeat", pid=1, processed=9)], now=3.0)
    state.apply_all([worker("worker-online", pid=1, processed=0)], now=4.0)
    assert counter(metrics(state, 4.0), "fleetops_tasks_orphaned") == 1
    started_on(state, "t2", "celery@w1", now=5.0)
    state.apply_all([worker("worker-online", pid=77, processed=5)], now=6.0)  # another pid
    assert counter(metrics(state, 6.0), "fleetops_tasks_orphaned") == 2


def test_an_orphan_whose_run_ends_after_all_leaves_without_an_outcome() -> None:
    state = FleetState(bounds=BOUNDS, limits=Limits(worker_timeout=5.0))
    state.apply_all([worker("worker-heartbeat")], now=0.0)
    started_on(state, "t1", "celery@w1", now=1.0)
    state.housekeeping(6.0)
    assert counter(metrics(state, 6.0), "fleetops_tasks_orphaned") == 1
    state.apply_all([task("task-succeeded", "t1", T0 + 9, runtime=8.0)], now=7.0)
    samples = metrics(state, 7.0)
    assert counter(samples, "fleetops_tasks_orphaned") == 0
    assert counter(samples, "fleetops_task_orphans_total", outcome="lost") == 0
    assert counter(samples, "fleetops_task_orphans_total", outcome="redelivered") == 0
    assert not state.orphans


def test_stuck_is_measured_on_the_exporters_clock_against_the_bound_in_force() -> None:
    # A worker timeout long enough for the worker to stay alive without heartbeats here.
    limits = Limits(stuck_after=100.0, stuck_bounds={"app.bounded": 5.0}, worker_timeout=1e6)
    state = FleetState(bounds=BOUNDS, limits=limits)
    state.apply_all([telemetry(time_limits={"app.long": 20.0})], now=0.0)
    state.housekeeping(0.0)
    # The worker's clock is an hour behind: its timestamps must not make the task look old.
    started_on(state, "t1", "celery@w1", now=1.0, ts=T0 - 3600)
    bound = 20.0 + task_faults.TIME_LIMIT_GRACE_SECONDS
    samples = metrics(state, 1.0 + bound - 1)
    assert counter(samples, "fleetops_tasks_stuck") == 0
    assert counter(samples, "fleetops_task_running_longest_seconds") == bound - 1
    assert value(samples, "fleetops_task_stuck_bound_seconds", name="app.long") == bound
    assert value(samples, "fleetops_task_time_limit_seconds", name="app.long") == 20.0
    samples = metrics(state, 1.0 + bound + 1)
    assert counter(samples, "fleetops_tasks_stuck") == 1
    # The configured bound wins over the time limit; the default applies to the rest.
    state.apply_all(
        [
            task("task-sent", "b1", T0, host="gen1@web", name="app.bounded", queue="slow"),
            task("task-started", "b1", T0 + 1),
            task("task-sent", "d1", T0, host="gen1@web", name="app.other", queue="slow"),
            task("task-started", "d1", T0 + 1),
        ],
        now=100.0,
    )
    samples = metrics(state, 106.0)
    assert value(samples, "fleetops_tasks_stuck", name="app.bounded", queue_name="slow") == 1
    assert value(samples, "fleetops_task_stuck_bound_seconds", name="app.other") == 100.0
    assert value(samples, "fleetops_tasks_stuck", name="app.other", queue_name="slow") == 0
    # A task that ended is not stuck; one on a worker that went down is no longer running.
    state.apply_all([task("task-succeeded", "b1", T0 + 7, runtime=6.0)], now=106.0)
    assert value(metrics(state, 107.0), "fleetops_tasks_stuck", name="app.bounded",
                 queue_name="slow") == 0  # fmt: skip
    # A worker that announced its shutdown drains: what ran past its bound is orphaned, the
    # rest still runs (the warm shutdown waits for it).
    state.apply_all([worker("worker-offline")], now=108.0)
    state.housekeeping(108.0)
    samples = metrics(state, 108.0)
    assert counter(samples, "fleetops_tasks_stuck") == 0
    assert counter(samples, "fleetops_task_running_longest_seconds") is None
    assert counter(samples, "fleetops_tasks_orphaned") == 1
    assert value(samples, "fleetops_task_running_longest_seconds", name="app.other",
                 queue_name="slow") == 8.0  # fmt: skip


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def test_an_eta_beyond_the_visibility_timeout_is_the_trap_counted_at_receipt() -> None:
    state = FleetState(bounds=BOUNDS)
    state.apply_all([telemetry(visibility_timeout=6.0, acks_late=True)], now=0.0)
    state.apply_all([sent("far"), sent("near"), sent("naive")], now=1.0)
    state.apply_all(
        [
            task("task-received", "far", T0 + 1, name="app.long", eta=iso(T0 + 11)),
            task("task-received", "near", T0 + 1, name="app.long", eta=iso(T0 + 5)),
            # Without an offset: taken as UTC.
            task("task-received", "naive", T0 + 1, name="app.long",
                 eta=iso(T0 + 8).removesuffix("+00:00")),
        ],
        now=1.0,
    )  # fmt: skip
    samples = metrics(state, 1.0)
    assert counter(samples, "fleetops_task_eta_beyond_visibility_total") == 2
    assert counter(samples, "fleetops_task_eta_farthest_seconds") == 10.0
    assert value(samples, "fleetops_broker_visibility_timeout_seconds", acks_late="true") == 6.0
    # The copy handed out again is received again: no second trap, the farthest stays.
    state.apply_all([task("task-received", "far", T0 + 8, name="app.long", eta=iso(T0 + 11))], 8)
    samples = metrics(state, 8.0)
    assert counter(samples, "fleetops_task_eta_beyond_visibility_total") == 2
    assert counter(samples, "fleetops_task_eta_farthest_seconds") == 10.0
    for uuid in ("far", "naive"):
        state.apply_all([task("task-started", uuid, T0 + 11)], now=11.0)
    samples = metrics(state, 11.0)
    assert counter(samples, "fleetops_task_eta_farthest_seconds") == 4.0  # "near" waits on
    state.housekeeping(11.0 + 4 + 301)  # its start never came: it no longer waits
    assert counter(metrics(state, 400.0), "fleetops_task_eta_farthest_seconds") is None


def test_the_trap_needs_a_known_visibility_timeout_and_the_setting_wins() -> None:
    unknown = FleetState(bounds=BOUNDS)
    unknown.apply_all([telemetry(acks_late=True)], now=0.0)  # RabbitMQ: no timeout announced
    unknown.apply_all([sent("t1"), task("task-received", "t1", T0 + 1, eta=iso(T0 + 5000))], 1)
    samples = metrics(unknown, 1.0)
    assert counter(samples, "fleetops_task_eta_beyond_visibility_total") == 0
    assert counter(samples, "fleetops_task_eta_farthest_seconds") == 4999.0
    assert not [k for k in samples if k[0] == "fleetops_broker_visibility_timeout_seconds"]
    told = FleetState(bounds=BOUNDS, limits=Limits(visibility_timeout=100.0))
    told.apply_all([telemetry(visibility_timeout=6.0, acks_late=False)], now=0.0)
    told.housekeeping(0.0)
    told.apply_all([sent("t1"), task("task-received", "t1", T0 + 1, eta=iso(T0 + 50))], 1)
    samples = metrics(told, 1.0)
    assert counter(samples, "fleetops_task_eta_beyond_visibility_total") == 0
    assert value(samples, "fleetops_broker_visibility_timeout_seconds", acks_late="false") == 100


def test_the_smallest_timeout_of_the_live_workers_is_in_force() -> None:
    state = FleetState(bounds=BOUNDS, limits=Limits(worker_timeout=10.0))
    state.apply_all([telemetry("celery@a", visibility_timeout=60.0, acks_late=False)], now=0.0)
    state.apply_all([telemetry("celery@b", visibility_timeout=30.0, acks_late=True)], now=5.0)
    state.housekeeping(5.0)
    assert (state.visibility_timeout, state.acks_late) == (30.0, True)
    state.apply_all([telemetry("celery@a", visibility_timeout=60.0, acks_late=False)], now=16.0)
    state.housekeeping(16.0)  # b is down: a's numbers are in force
    assert (state.visibility_timeout, state.acks_late) == (60.0, False)


HOSTILE_ETAS = ["tomorrow", "", "9999-99-99T00:00:00", "0001-01-01T00:00:00+14:00",
                "2026-13-01T00:00:00", "NaN", "x" * 64, "2026-01-01T00:00:00+99:00",
                "10000-01-01T00:00:00"]  # fmt: skip


@pytest.mark.parametrize("eta", [*HOSTILE_ETAS, 12, None, ["2026"], {"a": 1}, math.inf])
def test_a_hostile_eta_is_left_out_and_counted_never_raised(eta: object) -> None:
    checker = Checker()
    event = checker.check(task("task-received", "t1", T0, eta=eta), now=T0)
    assert "eta_at" not in event
    if eta:  # an empty text is no value, as everywhere
        assert sum(checker.corrections.values()) >= 1
    far = checker.check(task("task-received", "t2", T0, eta=iso(T0 + 500 * 86_400)), now=T0)
    assert "eta_at" not in far  # a countdown past the schedule horizon is no countdown
    good = checker.check(task("task-received", "t3", T0, eta="2026-12-03T10:00:00Z"), now=T0)
    assert good["eta_at"] == datetime(2026, 12, 3, 10, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("fields", "kept", "corrected"),
    [
        ({"visibility_timeout": 6, "acks_late": True, "time_limits": {"a": 5}},
         {"visibility_timeout": 6.0, "acks_late": True, "time_limits": {"a": 5.0}}, {}),
        ({"visibility_timeout": math.nan}, {}, {"bad_number": 1}),
        ({"visibility_timeout": math.inf}, {}, {"bad_number": 1}),
        ({"visibility_timeout": -1}, {}, {"bad_number": 1}),
        ({"visibility_timeout": 0}, {}, {"bad_number": 1}),
        ({"visibility_timeout": 10**40}, {}, {"bad_number": 1}),
        ({"visibility_timeout": "3600"}, {}, {"bad_number": 1}),
        ({"acks_late": "yes"}, {}, {"bad_number": 1}),
        ({"acks_late": 1}, {}, {"bad_number": 1}),
        ({"time_limits": [["a", 5]]}, {}, {"bad_number": 1}),
        ({"time_limits": "a=5"}, {}, {"bad_number": 1}),
        ({"time_limits": {"a": math.nan, "b": -3, "c": True, "d": "5", "e": 10**40, "ok": 1}},
         {"time_limits": {"ok": 1.0}}, {"entry_dropped": 5}),
        ({"time_limits": {"x" * 300: 5, "bad\ud800": 5, "nul\x00": 5, "": 5, "ok": 2.5}},
         {"time_limits": {"ok": 2.5}}, {"entry_dropped": 4}),
        ({"time_limits": {f"t{i}": 1 for i in range(MAX_TIME_LIMITS + 1000)}},
         {"time_limits": {f"t{i}": 1.0 for i in range(MAX_TIME_LIMITS)}}, {"entry_dropped": 1000}),
    ],
)  # fmt: skip
def test_announced_settings_are_checked_as_hostile_input(
    fields: dict, kept: dict, corrected: dict
) -> None:
    checker = Checker()
    event = checker.check(telemetry(**fields), now=T0)
    announced = {k: event[k] for k in ("visibility_timeout", "acks_late") if k in event}
    if event.get("time_limits"):
        announced["time_limits"] = event["time_limits"]
    assert announced == kept
    assert checker.corrections == corrected


def test_every_table_of_the_task_faults_stays_bounded() -> None:
    state = FleetState(bounds=BOUNDS, limits=Limits(max_tasks=1000, max_series=10_000_000))
    events = []
    for i in range(3000):
        events += [sent(f"t{i}"), task("task-started", f"t{i}", T0 + 1)]
    state.apply_all(events, now=1.0)
    assert len(state.tasks) <= 1000
    assert len(state.running["celery@w1"]) == len(state.tasks)  # evicted ones left the index
    state.apply_all([worker("worker-online", pid=2)], now=2.0)  # restarted
    assert len(state.orphans) == len(state.tasks)
    state.apply_all([sent(f"u{i}") for i in range(3000)], now=3.0)  # evicts the orphans
    assert len(state.orphans) <= len(state.tasks) <= 1000
    samples = metrics(state, 3.0)
    assert counter(samples, "fleetops_tasks_orphaned") == len(state.orphans)
    many = FleetState(bounds=BOUNDS, limits=Limits(max_series=10_000_000))
    extra = 10
    many.apply_all(
        [task("task-started", f"r{i}", T0 + 1) for i in range(MAX_RUNNING_PER_WORKER + extra)],
        now=1.0,
    )
    many.housekeeping(3.0)
    assert len(many.running["celery@w1"]) == MAX_RUNNING_PER_WORKER
    assert many.anomalies["running_forgotten"] == extra


def test_settings_refuse_bounds_that_are_not_positive_finite_seconds() -> None:
    refused = [
        {"exporter_stuck_bounds": {"a": 0}},
        {"exporter_stuck_bounds": {"a": "nan"}},
        {"exporter_stuck_bounds": {"": 5}},
        {"exporter_stuck_after": "inf"},
        {"exporter_visibility_timeout": -1},
        {"exporter_visibility_timeout": "nan"},
    ]
    for bad in refused:
        with pytest.raises(ConfigError, match=r"EXPORTER_(STUCK|VISIBILITY)"):
            load(**bad)
    settings = load(exporter_stuck_bounds={"a": "2.5"}, exporter_visibility_timeout=7)
    assert settings.exporter_stuck_bounds == {"a": 2.5}
    assert settings.exporter_stuck_after == task_faults.DEFAULT_STUCK_AFTER_SECONDS


def test_the_last_workers_orphans_wait_for_its_own_visibility_timeout() -> None:
    # One worker, visibility timeout 1 h under acks_late, SIGKILLed: nobody live is left to
    # announce a timeout, yet Redis hands the task back only after that hour.
    state = FleetState(bounds=BOUNDS)
    state.apply_all([worker("worker-online", pid=10, processed=0)], now=0.0)
    state.apply_all([telemetry(visibility_timeout=3600.0, acks_late=True)], now=0.0)
    started_on(state, "t1", "celery@w1", now=1.0)
    state.apply_all([worker("worker-heartbeat", pid=10, processed=1, active=1)], now=2.0)
    for now in range(3, 400):
        state.housekeeping(float(now))
    samples = metrics(state, 400.0)
    assert counter(samples, "fleetops_tasks_orphaned") == 1
    assert counter(samples, "fleetops_task_orphans_total", outcome="lost") == 0
    assert state.visibility_timeout == 3600.0  # the last known value stays in force
    orphaned_at = state.orphans["t1"].faults.orphaned_at  # type: ignore[union-attr]
    window = task_faults.redelivery_window(3600.0, True)
    state.housekeeping(orphaned_at + window - 1)
    assert counter(metrics(state, orphaned_at + window), "fleetops_tasks_orphaned") == 1
    state.housekeeping(orphaned_at + window)
    samples = metrics(state, orphaned_at + window)
    assert counter(samples, "fleetops_task_orphans_total", outcome="lost") == 1


def test_workers_past_the_hostname_cap_are_not_tracked_for_faults() -> None:
    # w3 and w4 share the overflow label: w4 coming online must not orphan w3's task.
    state = FleetState(bounds=BOUNDS, limits=Limits(max_hostnames=2))
    for host in ("celery@w1", "celery@w2", "celery@w3", "celery@w4"):
        state.apply_all([worker("worker-online", host, pid=10, processed=0)], now=0.0)
    started_on(state, "t1", "celery@w3", now=1.0)
    state.apply_all([worker("worker-online", "celery@w4", pid=10, processed=0)], now=2.0)
    state.housekeeping(1000.0)
    samples = metrics(state, 1000.0)
    assert counter(samples, "fleetops_tasks_orphaned") == 0
    assert counter(samples, "fleetops_task_orphans_total", outcome="lost") == 0
    assert counter(samples, "fleetops_tasks_stuck") == 0
    assert not state.running.get("__overflow__")


@pytest.mark.parametrize("acks_late", [False, True])
def test_a_warm_shutdown_drains_its_tasks_without_orphaning_them(acks_late: bool) -> None:
    # Celery sends worker-offline first, then waits for the running task (7.5 s here).
    state = FleetState(bounds=BOUNDS, limits=Limits(stuck_after=100.0))
    state.apply_all([worker("worker-online", pid=10, processed=0)], now=0.0)
    state.apply_all([telemetry(visibility_timeout=3600.0, acks_late=acks_late)], now=0.0)
    started_on(state, "t1", "celery@w1", now=1.0)
    started_on(state, "t2", "celery@w1", now=1.0)
    state.apply_all([worker("worker-offline", ts=T0 + 3, pid=10, processed=1)], now=3.0)
    state.housekeeping(4.0)
    samples = metrics(state, 4.0)
    assert counter(samples, "fleetops_tasks_orphaned") == 0
    assert counter(samples, "fleetops_task_orphans_total", outcome="lost") == 0
    state.apply_all([task("task-succeeded", "t1", T0 + 10.5, runtime=8.0)], now=11.0)
    for now in range(12, 100):  # past the worker timeout: still draining, not silent
        state.housekeeping(float(now))
    samples = metrics(state, 99.0)
    assert counter(samples, "fleetops_tasks_orphaned") == 0
    assert counter(samples, "fleetops_task_orphans_total", outcome="lost") == 0
    # t2 runs past its bound (100 s): the shutdown would have killed it by now.
    state.housekeeping(102.0)
    samples = metrics(state, 102.0)
    expected = (0, 1) if not acks_late else (1, 0)
    assert (
        counter(samples, "fleetops_tasks_orphaned"),
        counter(samples, "fleetops_task_orphans_total", outcome="lost"),
    ) == expected


def test_a_new_process_orphans_what_a_draining_worker_still_ran() -> None:
    limits = Limits(worker_timeout=1e6, purge_offline_after=0)
    state = FleetState(bounds=BOUNDS, limits=limits)
    state.apply_all([worker("worker-online", pid=10, processed=0)], now=0.0)
    state.apply_all([telemetry(visibility_timeout=3600.0, acks_late=True)], now=0.0)
    started_on(state, "t1", "celery@w1", now=1.0)
    state.apply_all([worker("worker-offline", ts=T0 + 3, pid=10, processed=1)], now=3.0)
    state.housekeeping(4.0)
    assert counter(metrics(state, 4.0), "fleetops_tasks_orphaned") == 0
    state.apply_all([worker("worker-online", ts=T0 + 5, pid=11, processed=0)], now=5.0)
    assert counter(metrics(state, 5.0), "fleetops_tasks_orphaned") == 1
    # Its consumer's reconnect (offline, then online from the same process) drains nothing.
    started_on(state, "t2", "celery@w1", now=6.0)
    state.apply_all([worker("worker-offline", ts=T0 + 7, pid=11, processed=1)], now=7.0)
    state.apply_all([worker("worker-online", ts=T0 + 8, pid=11, processed=1)], now=8.0)
    state.housekeeping(5000.0 - 1)
    assert "t2" in state.running["celery@w1"]


def test_a_worker_heard_again_takes_its_orphans_back() -> None:
    # RabbitMQ (no timeout), solo pool: a long task blocks the heartbeats for 40 s.
    state = FleetState(bounds=BOUNDS)
    state.apply_all([worker("worker-online", pid=10, processed=0)], now=0.0)
    state.apply_all([telemetry(acks_late=True)], now=0.0)
    started_on(state, "t1", "celery@w1", now=1.0)
    for now in range(2, 600):
        if now > 45 and now % 2 == 0:
            beat = worker("worker-heartbeat", ts=T0 + now, pid=10, processed=1, active=1)
            state.apply_all([beat], now=float(now))
        state.housekeeping(float(now))
        if now == 40:
            assert counter(metrics(state, 40.0), "fleetops_tasks_orphaned") == 1
    samples = metrics(state, 600.0)
    assert counter(samples, "fleetops_tasks_orphaned") == 0
    assert counter(samples, "fleetops_task_orphans_total", outcome="lost") == 0
    assert counter(samples, "fleetops_task_orphans_total", outcome="redelivered") == 0
    assert "t1" in state.running["celery@w1"]
    assert counter(samples, "fleetops_task_running_longest_seconds") == 599.0
    # Silent again, then heard from a new process: the old one died, its task stays an orphan.
    state.housekeeping(640.0)
    assert counter(metrics(state, 640.0), "fleetops_tasks_orphaned") == 1
    state.apply_all([worker("worker-heartbeat", ts=T0 + 641, pid=11, processed=0)], now=641.0)
    state.housekeeping(641.0)
    assert counter(metrics(state, 641.0), "fleetops_tasks_orphaned") == 1
    assert not state.running.get("celery@w1")


def test_silence_while_the_exporter_hears_nothing_orphans_nothing() -> None:
    state = FleetState(bounds=BOUNDS, limits=Limits(worker_timeout=10.0))
    state.apply_all([worker("worker-online", pid=10, processed=0)], now=0.0)
    started_on(state, "t1", "celery@w1", now=1.0)
    state.stream_connected = False  # the event stream is down: every worker looks silent
    for now in range(2, 60):
        state.housekeeping(float(now))
    assert counter(metrics(state, 60.0), "fleetops_tasks_orphaned") == 0
    state.stream_connected = True
    state.open_gap(60.0)  # reconnected: silence counts from now on
    state.housekeeping(65.0)
    assert counter(metrics(state, 65.0), "fleetops_tasks_orphaned") == 0
    state.housekeeping(71.0)  # not heard within the timeout after the reconnect: down
    assert counter(metrics(state, 71.0), "fleetops_tasks_orphaned") == 1


def test_no_orphan_is_judged_lost_while_the_exporter_hears_nothing() -> None:
    state = FleetState(bounds=BOUNDS, limits=Limits(worker_timeout=10.0, purge_offline_after=0))
    state.apply_all([worker("worker-online", pid=10, processed=0)], now=0.0)
    state.apply_all([telemetry(visibility_timeout=6.0, acks_late=True)], now=0.0)
    started_on(state, "t1", "celery@w1", now=1.0)
    state.apply_all([worker("worker-online", pid=11, processed=0)], now=2.0)  # restarted
    window = task_faults.redelivery_window(6.0, True)
    state.stream_connected = False  # its redelivery, if any, would go unheard
    for now in range(3, int(window) + 50):
        state.housekeeping(float(now))
    assert counter(metrics(state, window + 50), "fleetops_tasks_orphaned") == 1
    state.stream_connected = True
    state.open_gap(window + 50)
    state.housekeeping(window + 59)  # within the worker timeout after the reconnect
    assert counter(metrics(state, window + 59), "fleetops_task_orphans_total", outcome="lost") == 0
    state.housekeeping(window + 60)
    assert counter(metrics(state, window + 60), "fleetops_task_orphans_total", outcome="lost") == 1


def test_a_retry_received_before_its_task_retried_is_a_new_attempt() -> None:
    # Task.retry() publishes the retry before its worker sends task-retried: with a countdown
    # of about 0, B receives and starts it before A's task-retried arrives.
    state = FleetState(bounds=BOUNDS)
    state.apply_all(
        [
            sent("t1"),
            task("task-received", "t1", T0 + 1, "celery@A", name="app.long"),
            task("task-started", "t1", T0 + 2, "celery@A"),
            task("task-received", "t1", T0 + 3.001, "celery@B", name="app.long", retries=1),
            task("task-started", "t1", T0 + 3.002, "celery@B"),
            task("task-retried", "t1", T0 + 3.003, "celery@A", exception="X()"),
        ],
        now=1.0,
    )
    samples = metrics(state, 2.0)
    assert counter(samples, "fleetops_task_runs_repeated_total") == 0
    assert "t1" in state.running["celery@B"] and not state.running["celery@A"]
    # The retry's run started twice is still a twice-run.
    state.apply_all([task("task-started", "t1", T0 + 9, "celery@C")], now=3.0)
    assert counter(metrics(state, 3.0), "fleetops_task_runs_repeated_total") == 1
    # In the usual order (task-retried first), the retry's receipt is no second new attempt.
    state.apply_all(
        [
            sent("t2"),
            task("task-received", "t2", T0 + 1, "celery@A", name="app.long"),
            task("task-started", "t2", T0 + 2, "celery@A"),
            task("task-retried", "t2", T0 + 3, "celery@A", exception="X()"),
            task("task-received", "t2", T0 + 4, "celery@B", name="app.long", retries=1),
            task("task-started", "t2", T0 + 5, "celery@B"),
            task("task-started", "t2", T0 + 6, "celery@C"),
        ],
        now=4.0,
    )
    assert counter(metrics(state, 4.0), "fleetops_task_runs_repeated_total") == 2
    # Without the retries field the race looks like a second run, but A's late task-retried
    # ends no run of B's.
    state.apply_all(
        [
            sent("t3"),
            task("task-received", "t3", T0 + 1, "celery@A", name="app.long"),
            task("task-started", "t3", T0 + 2, "celery@A"),
            task("task-received", "t3", T0 + 3.001, "celery@B", name="app.long"),
            task("task-started", "t3", T0 + 3.002, "celery@B"),
            task("task-retried", "t3", T0 + 3.003, "celery@A", exception="X()"),
        ],
        now=5.0,
    )
    assert "t3" in state.running["celery@B"]


def test_an_orphan_waits_for_its_own_workers_timeout_when_the_live_ones_announce_none() -> None:
    state = FleetState(bounds=BOUNDS, limits=Limits(purge_offline_after=0))
    state.apply_all([worker("worker-online", pid=10, processed=0)], now=0.0)
    state.apply_all([telemetry(visibility_timeout=3600.0, acks_late=True)], now=0.0)
    started_on(state, "t1", "celery@w1", now=1.0)
    for now in range(2, 500):  # w2 announces no timeout (no telemetry); w1 died at 0
        state.apply_all([worker("worker-heartbeat", "celery@w2", pid=20, processed=0)], now)
        state.housekeeping(float(now))
    samples = metrics(state, 500.0)
    assert counter(samples, "fleetops_tasks_orphaned") == 1
    assert counter(samples, "fleetops_task_orphans_total", outcome="lost") == 0


def test_a_silent_worker_without_acks_late_has_the_worker_timeout_to_be_heard_again() -> None:
    # Nothing comes back without acks_late, but a silent worker may only be blocked.
    state = FleetState(bounds=BOUNDS)
    state.apply_all([worker("worker-online", pid=10, processed=0)], now=0.0)
    state.apply_all([telemetry(visibility_timeout=3600.0, acks_late=False)], now=0.0)
    started_on(state, "t1", "celery@w1", now=1.0)
    for now in range(2, 46):
        state.housekeeping(float(now))
    samples = metrics(state, 45.0)
    assert counter(samples, "fleetops_tasks_orphaned") == 1
    assert counter(samples, "fleetops_task_orphans_total", outcome="lost") == 0
    state.apply_all([worker("worker-heartbeat", ts=T0 + 46, pid=10, processed=0)], now=46.0)
    state.housekeeping(47.0)
    samples = metrics(state, 47.0)
    assert counter(samples, "fleetops_tasks_orphaned") == 0
    assert counter(samples, "fleetops_task_orphans_total", outcome="lost") == 0


def test_a_draining_worker_is_purged_only_once_its_drain_rule_handled_its_tasks() -> None:
    limits = Limits(purge_offline_after=600.0, stuck_after=1000.0)  # the bound is longer
    state = FleetState(bounds=BOUNDS, limits=limits)
    state.apply_all([worker("worker-online", pid=10, processed=0)], now=0.0)
    state.apply_all([telemetry(visibility_timeout=3600.0, acks_late=True)], now=0.0)
    started_on(state, "t1", "celery@w1", now=1.0)
    state.apply_all([worker("worker-offline", ts=T0 + 3, pid=10, processed=1)], now=3.0)
    for now in range(4, 1000):  # a warm shutdown waiting for a long task: not purged
        state.housekeeping(float(now))
    assert "celery@w1" in state.workers
    assert counter(metrics(state, 1000.0), "fleetops_tasks_orphaned") == 0
    state.housekeeping(1002.0)  # past its bound: the drain rule orphans it, then the purge
    assert counter(metrics(state, 1002.0), "fleetops_tasks_orphaned") == 1
    state.housekeeping(1003.0)
    assert "celery@w1" not in state.workers


def test_a_task_drained_for_15_minutes_without_acks_late_is_neither_orphaned_nor_lost() -> None:
    state = FleetState(bounds=BOUNDS)  # purge after 600 s, stuck after 3600 s
    state.apply_all([worker("worker-online", pid=10, processed=0)], now=0.0)
    state.apply_all([telemetry(visibility_timeout=3600.0, acks_late=False)], now=0.0)
    started_on(state, "t1", "celery@w1", now=1.0)
    state.apply_all([worker("worker-offline", ts=T0 + 10, pid=10, processed=1)], now=10.0)
    for now in range(11, 900):
        state.housekeeping(float(now))
    state.apply_all([task("task-succeeded", "t1", T0 + 900, runtime=899.0)], now=900.0)
    state.housekeeping(901.0)
    samples = metrics(state, 901.0)
    assert counter(samples, "fleetops_tasks_orphaned") == 0
    assert counter(samples, "fleetops_task_orphans_total", outcome="lost") == 0


@pytest.mark.parametrize("acks_late", [False, True])
def test_nothing_is_purged_orphaned_or_lost_while_the_exporter_is_deaf(acks_late: bool) -> None:
    state = FleetState(bounds=BOUNDS)  # purge after 600 s
    state.apply_all([worker("worker-online", pid=10, processed=0)], now=0.0)
    state.apply_all([telemetry(visibility_timeout=3600.0, acks_late=acks_late)], now=0.0)
    started_on(state, "t1", "celery@w1", now=1.0)
    state.stream_connected = False  # the exporter's own stream is down for 11 minutes
    for now in range(2, 666):
        state.housekeeping(float(now))
    assert "celery@w1" in state.workers
    state.stream_connected = True
    state.open_gap(666.0)
    state.housekeeping(667.0)  # heard again within the timeout: no purge, no orphan
    assert "celery@w1" in state.workers
    state.apply_all([worker("worker-heartbeat", ts=T0 + 668, pid=10, processed=1)], now=668.0)
    state.housekeeping(668.0)
    samples = metrics(state, 668.0)
    assert counter(samples, "fleetops_tasks_orphaned") == 0
    assert counter(samples, "fleetops_task_orphans_total", outcome="lost") == 0
    assert "t1" in state.running["celery@w1"]


def test_a_restart_without_acks_late_is_not_judged_lost_while_deaf() -> None:
    state = FleetState(bounds=BOUNDS, limits=Limits(worker_timeout=10.0))
    state.apply_all([worker("worker-online", pid=10, processed=0)], now=0.0)
    state.apply_all([telemetry(visibility_timeout=6.0, acks_late=False)], now=0.0)
    started_on(state, "t1", "celery@w1", now=1.0)
    state.stream_connected = False
    state.housekeeping(2.0)
    state.stream_connected = True
    state.open_gap(3.0)  # reconnected: a restart seen now cannot be judged yet
    state.apply_all([worker("worker-online", pid=11, processed=0)], now=4.0)
    assert counter(metrics(state, 4.0), "fleetops_task_orphans_total", outcome="lost") == 0
    assert counter(metrics(state, 4.0), "fleetops_tasks_orphaned") == 1
    state.housekeeping(13.0)  # the worker timeout after the reconnect: judged, lost
    assert counter(metrics(state, 13.0), "fleetops_task_orphans_total", outcome="lost") == 1


@pytest.mark.parametrize("acks_late", [False, True])
def test_a_silent_workers_orphan_is_lost_only_once_its_process_is_gone(acks_late: bool) -> None:
    # A solo pool's long task holds the heartbeats: the orphan is reported at once, but the
    # process may still run it (and does: it succeeds, the heartbeats resume); no "lost" page.
    state = FleetState(bounds=BOUNDS, limits=Limits(purge_offline_after=0))
    state.apply_all([worker("worker-online", pid=10, processed=0)], now=0.0)
    state.apply_all([telemetry(visibility_timeout=60.0, acks_late=acks_late)], now=0.0)
    started_on(state, "t1", "celery@w1", now=1.0)
    for now in range(2, 900):
        state.housekeeping(float(now))
    samples = metrics(state, 900.0)
    assert counter(samples, "fleetops_tasks_orphaned") == 1
    assert counter(samples, "fleetops_task_orphans_total", outcome="lost") == 0
    state.apply_all([task("task-succeeded", "t1", T0 + 900, runtime=899.0)], now=900.0)
    state.apply_all([worker("worker-heartbeat", ts=T0 + 900, pid=10, processed=1)], now=900.0)
    state.housekeeping(901.0)
    samples = metrics(state, 901.0)
    assert counter(samples, "fleetops_tasks_orphaned") == 0
    assert counter(samples, "fleetops_task_orphans_total", outcome="lost") == 0
    # Silent again, then a new process of the host is heard: the old one is gone, so the
    # orphan is lost after its window (at once without acks_late).
    started_on(state, "t2", "celery@w1", now=902.0)
    for now in range(903, 1800):
        state.housekeeping(float(now))
    assert counter(metrics(state, 1800.0), "fleetops_task_orphans_total", outcome="lost") == 0
    state.apply_all([worker("worker-online", ts=T0 + 1800, pid=11, processed=0)], now=1800.0)
    state.housekeeping(1800.0)
    assert counter(metrics(state, 1800.0), "fleetops_task_orphans_total", outcome="lost") == 1


def test_a_purged_silent_workers_orphans_are_judged_lost() -> None:
    state = FleetState(bounds=BOUNDS, limits=Limits(purge_offline_after=300.0))
    state.apply_all([worker("worker-online", pid=10, processed=0)], now=0.0)
    state.apply_all([telemetry(visibility_timeout=60.0, acks_late=False)], now=0.0)
    started_on(state, "t1", "celery@w1", now=1.0)
    for now in range(2, 300):
        state.housekeeping(float(now))
    assert counter(metrics(state, 300.0), "fleetops_task_orphans_total", outcome="lost") == 0
    for now in range(300, 305):
        state.housekeeping(float(now))
    assert "celery@w1" not in state.workers
    samples = metrics(state, 305.0)
    assert counter(samples, "fleetops_tasks_orphaned") == 0
    assert counter(samples, "fleetops_task_orphans_total", outcome="lost") == 1


def test_stuck_tasks_stay_in_the_gauges_while_the_exporter_is_deaf() -> None:
    state = FleetState(bounds=BOUNDS, limits=Limits(stuck_bounds={"app.long": 20.0}))
    state.apply_all([worker("worker-online", pid=10, processed=0)], now=0.0)
    state.apply_all([telemetry(visibility_timeout=3600.0, acks_late=True)], now=0.0)
    started_on(state, "t1", "celery@w1", now=1.0)
    state.apply_all([worker("worker-heartbeat", ts=T0 + 39, pid=10, processed=0)], now=39.0)
    state.stream_connected = False  # the exporter's own stream is down for 80 s
    for now in range(40, 120):
        state.housekeeping(float(now))
    samples = metrics(state, 120.0)
    assert counter(samples, "fleetops_tasks_stuck") == 1
    assert counter(samples, "fleetops_task_running_longest_seconds") == 119.0
    state.stream_connected = True
    state.open_gap(120.0)
    state.housekeeping(125.0)  # within the timeout after the reconnect: still running
    assert counter(metrics(state, 125.0), "fleetops_tasks_stuck") == 1


def test_a_late_task_retried_of_a_retry_finished_already_leaves_no_record() -> None:
    # The retry is received, started and finished on B before A's task-retried arrives.
    state = FleetState(bounds=BOUNDS)
    state.apply_all(
        [
            sent("t1"),
            task("task-received", "t1", T0 + 1, "celery@A", name="app.long"),
            task("task-started", "t1", T0 + 2, "celery@A"),
            task("task-received", "t1", T0 + 3, "celery@B", name="app.long", retries=1),
            task("task-started", "t1", T0 + 3.1, "celery@B"),
            task("task-succeeded", "t1", T0 + 3.2, "celery@B", runtime=0.1),
        ],
        now=1.0,
    )
    late = task("task-retried", "t1", T0 + 3.05, "celery@A", exception="X()")
    state.apply_all([late], now=2.0)
    assert "t1" not in state.tasks  # no phantom record that never finishes
    assert "unknown_task" not in state.anomalies
    samples = metrics(state, 2.0)
    retried = value(samples, "celery_task_retried_total", hostname="celery@A", **PAIR)
    assert retried == 1
    state.apply_all([late], now=3.0)  # the same event again: a duplicate, counted once
    assert value(metrics(state, 3.0), "celery_task_retried_total", hostname="celery@A", **PAIR) == 1
    assert counter(samples, "fleetops_task_runs_repeated_total") == 0
