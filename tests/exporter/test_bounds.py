"""Bounded whatever the stream does: every label is admitted through a cap with an overflow
value and a counter, and the broker poller never polls more queues than the cap."""

from __future__ import annotations

from exporters.metrics.queues import queues_to_poll
from exporters.metrics.redis_poller import RedisPoller
from exporters.metrics.state import OVERFLOW, Limits
from tests.exporter.process import parse, total, value
from tests.exporter.test_units import BOUNDS, _render
from tests.servers import RedisServer
from tests.stream.checked import CheckedFleetState as FleetState

LIMITS = Limits(max_queues=3, max_task_names=4, max_hostnames=5, max_exceptions=2)


def _failures(count: int) -> list[dict]:
    events = []
    for n in range(count):
        task = f"t{n}"
        events += [
            {"type": "task-sent", "uuid": task, "hostname": f"gen{n}@producer-{n}",
             "timestamp": 1000.0 + n, "name": f"app.task_{n}", "queue": f"queue-{n}"},
            {"type": "task-failed", "uuid": task, "hostname": f"celery@worker-{n}",
             "timestamp": 1001.0 + n, "exception": f"Error{n}('x')"},
        ]  # fmt: skip
    return events


def test_every_label_is_capped_with_an_overflow_value_and_a_counter() -> None:
    state = FleetState(bounds=BOUNDS, limits=LIMITS)
    state.apply_all(_failures(50), now=1.0)
    names = {key[0] for key in state.task_series} - {"unknown"}
    hosts = {key[1] for key in state.task_series}
    queues = {key[2] for key in state.task_series}
    assert len(names - {OVERFLOW}) == 4 and OVERFLOW in names
    assert len(hosts - {OVERFLOW}) == 5 and OVERFLOW in hosts
    assert len(queues - {OVERFLOW}) == 3 and OVERFLOW in queues
    exceptions = {e for s in state.task_series.values() for e in s.failed}
    assert len(exceptions - {OVERFLOW}) == 2 and OVERFLOW in exceptions
    assert state.known_queues() == {"queue-0", "queue-1", "queue-2"}
    samples = parse(_render(state))
    assert value(samples, "fleetops_exporter_label_values", label="queue_name") == 3
    assert value(samples, "fleetops_exporter_label_overflow_total", label="exception") == 48
    # Every failure is still counted: under its own labels or under the overflow value.
    assert total(samples, "celery_task_failed_total") == 50


def test_a_purged_worker_frees_its_place_for_the_next_autoscaled_one() -> None:
    state = FleetState(bounds=BOUNDS, limits=Limits(max_hostnames=2, purge_offline_after=60))
    beat = {"type": "worker-heartbeat", "timestamp": 1000.0}
    state.apply_all([{**beat, "hostname": f"celery@pod-{n}"} for n in range(2)], now=0.0)
    state.housekeeping(now=100.0)  # both silent for longer than 60 s: purged
    state.apply_all([{**beat, "hostname": "celery@pod-new"}], now=100.0)
    assert set(state.workers) == {"celery@pod-new"}


def test_the_queues_to_poll_are_capped_configured_first() -> None:
    assert queues_to_poll({"b", "c", "d"}, ["z", "a"], cap=3) == {"z", "a", "b"}
    assert queues_to_poll({"b"}, ["z", "a", "y"], cap=2) == {"a", "y"}


def test_the_redis_poller_polls_at_most_the_cap_of_declared_queues(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    for n in range(40):  # kombu's bindings, as 40 declared queues leave them
        client.sadd(f"_kombu.binding.q{n:02d}", f"q{n:02d}\x06\x16\x06\x16q{n:02d}")
    poller = RedisPoller(redis_server.url, max_queues=10)
    snapshot = poller.poll({"q39"}, lambda _id: None)
    assert len(snapshot.lengths) == 10
    assert "q39" in snapshot.lengths and "dead_letter" in snapshot.lengths
    assert poller.skipped_queues == 40 - 9
    poller.close()
