"""A worker stopped on purpose (worker-offline) is told apart from one that went silent."""

from __future__ import annotations

from exporters.metrics.histogram import DEFAULT_BUCKETS
from exporters.metrics.state import Limits
from tests.exporter.process import rendered, value
from tests.stream.checked import CheckedFleetState as FleetState

LIMITS = Limits(worker_timeout=10, purge_offline_after=600)


def _worker_metrics(state: FleetState, now: float, host: str) -> tuple[float | None, ...]:
    samples = rendered(state, now=now, wall=now)
    return (
        value(samples, "celery_worker_up", hostname=host),
        value(samples, "fleetops_worker_stopped_cleanly", hostname=host),
    )


def _event(kind: str, host: str) -> dict:
    return {"type": kind, "hostname": host, "active": 0, "processed": 0}


def test_a_clean_stop_is_marked_until_the_worker_comes_back() -> None:
    state = FleetState(bounds=DEFAULT_BUCKETS, limits=LIMITS)
    state.apply_all([_event("worker-online", "celery@a"), _event("worker-heartbeat", "celery@a")],
                    now=0.0)  # fmt: skip
    assert _worker_metrics(state, 1.0, "celery@a") == (1, 0)

    state.apply_all([_event("worker-offline", "celery@a")], now=2.0)
    # Down either way, as celery-exporter reports it; only the new gauge says it was on purpose.
    assert _worker_metrics(state, 3.0, "celery@a") == (0, 1)
    assert _worker_metrics(state, 300.0, "celery@a") == (0, 1)

    state.apply_all([_event("worker-online", "celery@a")], now=400.0)
    assert _worker_metrics(state, 401.0, "celery@a") == (1, 0)


def test_a_worker_that_goes_silent_is_down_but_not_stopped_cleanly() -> None:
    state = FleetState(bounds=DEFAULT_BUCKETS, limits=LIMITS)
    state.apply_all([_event("worker-online", "celery@b"), _event("worker-heartbeat", "celery@b")],
                    now=0.0)  # fmt: skip
    # No worker-offline: heartbeats just stop, as when the process is killed.
    assert _worker_metrics(state, 60.0, "celery@b") == (0, 0)


def test_the_mark_goes_with_the_purged_worker() -> None:
    state = FleetState(bounds=DEFAULT_BUCKETS, limits=LIMITS)
    state.apply_all([_event("worker-offline", "celery@c")], now=0.0)
    assert state.housekeeping(601.0) == ["celery@c"]
    assert _worker_metrics(state, 601.0, "celery@c") == (None, None)
