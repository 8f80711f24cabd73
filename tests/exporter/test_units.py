"""The exporter's parts on their own: wire parsing, decoding, state rules, rendering."""

from __future__ import annotations

import base64
import random
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from exporters.metrics.amqp_poller import KombuPoller
from exporters.metrics.app import latency_breaking_points, load_thresholds
from exporters.metrics.histogram import DEFAULT_BUCKETS, with_required
from exporters.metrics.queues import QueueSnapshot
from exporters.metrics.render import Extras, Renderer, Thresholds
from exporters.metrics.settings import load
from exporters.metrics.state import Limits
from exporters.stream import backoff as backoff_module
from exporters.stream import resp
from exporters.stream.backoff import Backoff
from exporters.stream.batches import RAW, Batch, BatchQueue
from exporters.stream.envelope import DecodeError, decode
from exporters.stream.events import exception_type as exception_label
from exporters.stream.events import hostname_label
from exporters.stream.resp import PubSubParser, command
from exporters.stream.status import StreamStatus
from fleetops import breaking_points
from fleetops.errors import ConfigError
from fleetops.fleet.spec import FleetContext
from tests.exporter.process import parse, promtool_accepts, total, value
from tests.servers import RedisServer
from tests.stream.checked import CheckedFleetState as FleetState

BOUNDS = with_required(DEFAULT_BUCKETS, latency_breaking_points())


def wire_envelope(body: object, routing_key: str = "task.multi") -> bytes:
    return orjson.dumps(
        {
            "body": base64.b64encode(orjson.dumps(body)).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {"hostname": "w@h"},
            "properties": {
                "delivery_info": {"exchange": "celeryev", "routing_key": routing_key},
                "body_encoding": "base64",
            },
        }
    )


def pmessage(payload: bytes, channel: bytes = b"/0.celeryev/task.multi") -> bytes:
    pattern = b"/0.celeryev/*"
    return b"*4\r\n$8\r\npmessage\r\n" + b"".join(
        b"$%d\r\n%s\r\n" % (len(part), part) for part in (pattern, channel, payload)
    )


def test_pubsub_parser_splits_replies_at_any_byte_boundary() -> None:
    payloads = [wire_envelope({"type": "worker-heartbeat", "n": i}) for i in range(5)]
    wire = b"".join(pmessage(p) for p in payloads) + b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    whole = PubSubParser().feed(wire)
    assert [r[3] for r in whole[:5]] == payloads
    assert whole[5] == [b"pong", b""]
    parser = PubSubParser()
    pieces: list = []
    for i in range(len(wire)):
        pieces.extend(parser.feed(wire[i : i + 1]))
    assert pieces == whole
    assert parser.pending_bytes == 0
    assert command("PING") == b"*1\r\n$4\r\nPING\r\n"


def test_pubsub_payloads_match_the_generic_parser_at_any_byte_boundary() -> None:
    """The reader's fast path takes only message payloads and skips every other reply."""
    payloads = [wire_envelope({"type": "worker-heartbeat", "n": i}) for i in range(4)]
    message = b"*3\r\n$7\r\nmessage\r\n$11\r\n/0.celeryev\r\n$%d\r\n%s\r\n" % (
        len(payloads[2]), payloads[2],
    )  # fmt: skip
    wire = (
        b"*3\r\n$9\r\nsubscribe\r\n$11\r\n/0.celeryev\r\n:1\r\n"
        + pmessage(payloads[0])
        + b"+PONG\r\n"
        + pmessage(payloads[1])
        + b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
        + message
        + pmessage(b"")
        + b"*4\r\n$8\r\npmessage\r\n$1\r\np\r\n$1\r\nc\r\n$-1\r\n"  # a null payload
        + pmessage(payloads[3])
    )
    expected = [payloads[0], payloads[1], payloads[2], b"", payloads[3]]
    assert PubSubParser().payloads(wire) == expected
    for size in (1, 2, 7, 64):
        parser = PubSubParser()
        pieces: list = []
        for i in range(0, len(wire), size):
            pieces.extend(parser.payloads(wire[i : i + size]))
        assert pieces == expected, size
        assert parser.pending_bytes == 0


def test_pubsub_payloads_of_whole_messages_take_the_fast_path(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Messages are split without the generic parser: the point of payloads() is its speed."""
    generic = resp._parse
    calls: list[int] = []
    monkeypatch.setattr(resp, "_parse", lambda *a: calls.append(a[2]) or generic(*a))
    payloads = [wire_envelope({"type": "task-started", "n": i}) for i in range(50)]
    wire = b"".join(pmessage(p) for p in payloads)
    assert PubSubParser().payloads(wire) == payloads
    assert calls == []


def test_decode_single_and_multi_events() -> None:
    one = {"type": "task-sent", "uuid": "a"}
    assert decode(wire_envelope(one)) == [one]
    many = [{"type": "task-started", "uuid": "a"}, {"type": "task-succeeded", "uuid": "a"}]
    assert decode(wire_envelope(many)) == many
    # kombu without body_encoding (other transports) carries the JSON text itself
    assert decode(orjson.dumps({"body": orjson.dumps(one).decode()})) == [one]
    with pytest.raises(DecodeError) as caught:
        decode(b'{"body": "x", "content-type": "application/x-python-serialize"}')
    assert caught.value.reason == "bad_envelope"


def _event(kind: str, uuid: str, ts: float, host: str = "celery@w1", **fields: object) -> dict:
    return {"type": kind, "uuid": uuid, "hostname": host, "timestamp": ts, "clock": 1, **fields}


def _lifecycle(uuid: str, t: float, ok: bool = True) -> list[dict]:
    end = (
        _event("task-succeeded", uuid, t + 3, runtime=1.5)
        if ok
        else _event("task-failed", uuid, t + 3, exception="ValueError('boom')")
    )
    return [
        _event("task-sent", uuid, t, host="gen77@web1", name="app.add", queue="math"),
        _event("task-received", uuid, t + 1, name="app.add"),
        _event("task-started", uuid, t + 1.5),
        end,
    ]


def test_duplicates_and_out_of_order_events_never_make_a_counter_wrong() -> None:
    state = FleetState(bounds=BOUNDS)
    first, second = _lifecycle("t1", 1000.0), _lifecycle("t2", 1000.0, ok=False)
    # t2 arrives out of order (received before sent) and every t1 event twice.
    stream = [*first, *first, second[1], second[0], second[2], second[3]]
    state.apply_all(stream, now=1.0)
    series = state.task_series[("app.add", "celery@w1", "math")]
    assert (series.received, series.started, series.succeeded) == (2, 2, 1)
    assert series.failed == {"ValueError": 1}
    assert state.task_series[("app.add", "web1", "math")].sent == 2
    assert state.anomalies["duplicate"] == 4
    assert "out_of_order" not in state.anomalies  # t2's received waited for its sent
    assert state.task_queue_series[("app.add", "math")].latency.counts[-1] == 0
    assert sum(state.task_queue_series[("app.add", "math")].latency.counts) == 2
    assert state.tasks == {}  # both finished: nothing left in flight


def test_events_before_their_task_sent_wait_for_it_to_name_the_queue() -> None:
    state = FleetState(bounds=BOUNDS)
    state.apply_all(_lifecycle("t0", 990.0), now=1.0)  # the producers do send task-sent
    early = _lifecycle("t1", 1000.0)
    state.apply_all(early[1:], now=2.0)  # received, started, succeeded before the sent
    assert state.parked and ("app.add", "celery@w1", "unknown") not in state.task_series
    state.apply_all(early[:1], now=2.5)
    series = state.task_series[("app.add", "celery@w1", "math")]
    assert (series.received, series.started, series.succeeded) == (2, 2, 2)
    assert not state.parked and state.tasks == {}
    assert state.anomalies == {}


def test_a_task_sent_that_never_comes_delays_its_events_by_the_window_only() -> None:
    state = FleetState(bounds=BOUNDS, limits=Limits(reorder_window=2.0))
    state.apply_all(_lifecycle("t0", 990.0), now=1.0)
    state.apply_all(_lifecycle("t1", 1000.0)[1:], now=2.0)
    state.housekeeping(now=3.0)
    assert "t1" in state.parked
    state.housekeeping(now=4.0)
    series = state.task_series[("app.add", "celery@w1", "unknown")]
    assert (series.received, series.started, series.succeeded) == (1, 1, 1)
    assert not state.parked


def test_the_first_task_waits_for_its_late_task_sent_too() -> None:
    # Before any task-sent has arrived it is unknown whether producers send them: the first
    # task of a fresh exporter whose received beat its sent is still counted in its queue.
    state = FleetState(bounds=BOUNDS)
    first = _lifecycle("t1", 1000.0)
    state.apply_all(first[1:], now=1.0)
    state.apply_all(first[:1], now=1.5)
    series = state.task_series[("app.add", "celery@w1", "math")]
    assert (series.received, series.started, series.succeeded) == (1, 1, 1)
    assert ("app.add", "celery@w1", "unknown") not in state.task_series


def test_without_task_sent_events_nothing_waits_and_parking_is_bounded() -> None:
    quiet = FleetState(bounds=BOUNDS)
    quiet.apply_all(_lifecycle("t1", 1000.0)[1:], now=1.0)  # producers without task-sent
    assert "t1" in quiet.parked  # not known yet whether the producers send task-sent
    quiet.housekeeping(now=3.5)  # its window passes without one: they do not
    assert not quiet.parked
    quiet.apply_all(_lifecycle("t2", 1001.0)[1:], now=4.0)
    assert not quiet.parked  # from then on nothing waits
    assert quiet.task_series[("app.add", "celery@w1", "unknown")].succeeded == 2
    busy = FleetState(bounds=BOUNDS, limits=Limits(max_parked=100))
    busy.apply_all(_lifecycle("t0", 990.0), now=1.0)
    for i in range(1000):
        busy.apply_all(_lifecycle(f"t{i + 1}", 1000.0)[1:2], now=2.0)
    assert len(busy.parked) == 100
    assert busy.task_series[("app.add", "celery@w1", "unknown")].received == 900


def test_clock_skew_is_clamped_and_counted() -> None:
    state = FleetState(bounds=BOUNDS)
    events = _lifecycle("t1", 1000.0)
    events[0]["timestamp"] = 1010.0  # the producer's clock runs 10 s ahead of the worker's
    state.apply_all(events, now=1.0)
    wait = state.task_queue_series[("app.add", "math")].wait
    assert wait.counts[0] == 1 and wait.sum == 0.0
    assert state.anomalies["clock_skew"] == 2  # queue wait and end-to-end latency


def test_events_of_unknown_tasks_are_still_counted() -> None:
    state = FleetState(bounds=BOUNDS)
    state.apply_all(_lifecycle("t1", 1000.0)[2:], now=1.0)  # started + succeeded only
    state.housekeeping(now=3.5)  # after the window its task-sent could have come in
    series = state.task_series[("unknown", "celery@w1", "unknown")]
    assert (series.started, series.succeeded) == (1, 1)
    assert state.anomalies["unknown_task"] == 1  # counted once per task


def test_in_flight_tasks_and_series_are_bounded() -> None:
    state = FleetState(bounds=BOUNDS, limits=Limits(max_series=100, max_tasks=1000))
    for i in range(5000):
        state.apply_all(
            [_event("task-sent", f"t{i}", 1.0, host="p@h", name=f"task{i}", queue="q")], now=1.0
        )
    assert len(state.tasks) <= 1000
    assert state.anomalies["task_evicted"] > 0
    assert state.series_count <= 100
    assert state.series_limit_hits > 0
    assert state.events_by_type["task-sent"] == 5000


def test_offline_worker_is_down_then_purged() -> None:
    state = FleetState(bounds=BOUNDS, limits=Limits(worker_timeout=10, purge_offline_after=60))
    state.apply_all([*_lifecycle("t1", 1000.0)], now=0.0)
    state.apply_all([{"type": "worker-heartbeat", "hostname": "celery@w1", "active": 1}], now=0.0)
    worker = state.workers["celery@w1"]
    assert state.worker_up(worker, 5.0) and not state.worker_up(worker, 11.0)
    assert state.housekeeping(30.0) == []
    assert state.housekeeping(61.0) == ["celery@w1"]
    assert not any(key[1] == "celery@w1" for key in state.task_series)
    assert ("app.add", "web1", "math") in state.task_series  # the producer's sends stay


def test_missed_events_after_a_reconnect_are_estimated_from_lamport_clocks() -> None:
    state = FleetState(bounds=BOUNDS)
    beat = [{"type": "worker-heartbeat", "hostname": "celery@w1", "clock": c} for c in (1, 2, 3)]
    state.apply_all(beat, now=0.0)
    state.open_gap(now=1.0, window=1.0)
    after = [{"type": "worker-heartbeat", "hostname": "celery@w1", "clock": c} for c in (9, 8)]
    state.apply_all(after, now=1.5)
    state.housekeeping(2.5)
    assert state.dropped["resubscribe"] == 4  # clocks 4..7 never arrived


def test_labels_follow_the_contract() -> None:
    assert hostname_label("gen4242@web-1") == "web-1"
    assert hostname_label("celery@worker-1") == "celery@worker-1"
    assert exception_label("ValueError('x')") == "ValueError"
    assert exception_label("billiard.exceptions.WorkerLostError: lost") == "WorkerLostError"
    assert exception_label(None) == "UnknownException"


def test_buckets_always_include_the_breaking_points() -> None:
    assert with_required((1.0, 10.0), (5.0, 20.0)) == (1.0, 5.0, 10.0, 20.0)
    assert set(latency_breaking_points()) <= set(BOUNDS)
    with pytest.raises(ValueError):
        with_required((-1.0,), ())


def test_the_hand_over_queue_drops_and_counts_instead_of_blocking() -> None:
    queue = BatchQueue(max_bytes=100)
    assert queue.put(Batch(RAW, [b"a"] * 3, 60))
    assert not queue.put(Batch(RAW, [b"b"] * 2, 60))
    assert (queue.dropped_batches, queue.dropped_messages) == (1, 2)
    got = queue.get(timeout=0.1)
    assert got is not None and len(got.items) == 3
    assert queue.get(timeout=0.01) is None


def _many_series_state(workers: int, names: int, queues: int) -> FleetState:
    state = FleetState(bounds=BOUNDS, limits=Limits(max_series=10_000_000))
    events = []
    n = 0
    for w in range(workers):
        host = f"celery@worker-{w}"
        events.append({"type": "worker-heartbeat", "hostname": host, "active": 1, "processed": 3})
        for t in range(names):
            n += 1
            uuid, name, queue = f"u{n}", f"app.task_{t}", f"queue-{t % queues}"
            events += [
                _event("task-sent", uuid, 1000.0, host="gen1@web", name=name, queue=queue),
                _event("task-received", uuid, 1001.0, host=host, name=name),
                _event("task-started", uuid, 1001.5, host=host),
                _event("task-succeeded", uuid, 1002.0, host=host, runtime=0.5),
            ]
    state.apply_all(events, now=0.0)
    return state


def _render(
    state: FleetState, renderer: Renderer | None = None, thresholds: Thresholds | None = None
) -> str:
    extras = Extras(
        status=StreamStatus(connected=True),
        snapshot=QueueSnapshot(ok=True, lengths={"queue-0": {0: 5, 3: 2}}),
        consumers={"queue-0": 3},
        overflow_dropped=0,
        last_scrape_seconds=0.01,
        thresholds=thresholds or Thresholds([("queue_depth", "warning", 1.0)], [("ratio", 0.5)]),
    )
    return "".join((renderer or Renderer()).render(state, extras, now=1.0, wall=1003.0))


def test_metrics_with_many_series_parse_and_pass_promtool(tmp_path: Path) -> None:
    # Every family with many series; the size (200 workers x 50 task names x 10 queues)
    # is timed in bench/exporter_throughput.py, never asserted here.
    state = _many_series_state(workers=20, names=50, queues=10)
    text = _render(state)
    samples = parse(text)
    assert total(samples, "celery_task_succeeded_total") == 20 * 50
    assert value(samples, "celery_queue_length", queue_name="queue-0") == 7
    assert (
        value(samples, "fleetops_queue_length_by_priority", queue_name="queue-0", priority="3") == 2
    )
    assert value(samples, "celery_active_consumer_count", queue_name="queue-0") == 3
    assert value(samples, "celery_worker_up", hostname="celery@worker-7") == 1
    assert value(samples, "fleetops_exporter_event_lag_seconds") == pytest.approx(1.0)
    first_breaking_point = repr(min(latency_breaking_points()))
    bucket = value(
        samples, "fleetops_task_latency_seconds_bucket", name="app.task_0", queue_name="queue-0",
        le=first_breaking_point,
    )  # fmt: skip
    assert bucket == 20
    promtool_accepts(text)


def test_prefix_and_static_labels_apply_everywhere() -> None:
    state = _many_series_state(workers=1, names=1, queues=1)
    text = _render(state, Renderer(prefix="jobs_", static_labels={"cluster": 'eu "1"'}))
    samples = parse(text)
    assert total(samples, "jobs_task_succeeded_total", cluster='eu "1"') == 1
    assert not any(name.startswith("celery_") for name, _labels in samples)
    assert all(("cluster", 'eu "1"') in labels for _name, labels in samples)


def test_settings_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="EXPORTER_METRIC_PREFIX"):
        load(exporter_metric_prefix="9bad")
    with pytest.raises(ConfigError, match="EXPORTER_STATIC_LABELS"):
        load(exporter_static_labels={"queue_name": "x"})
    with pytest.raises(ConfigError, match="BROKER_URL"):
        load(broker_url="kafka://nope")


def test_cli_rejects_bad_options_with_a_clear_message() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fleetops", "exporter", "--static-label", "novalue"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "expected key=value" in result.stderr


def test_the_kombu_poller_reads_ready_messages_and_consumers() -> None:
    # RabbitMQ cannot run here; kombu's in-memory transport answers the same passive
    # queue_declare the poller sends to RabbitMQ.
    poller = KombuPoller("memory://")
    channel = poller._channel()
    channel.queue_declare(queue="work")
    for _ in range(3):
        channel.basic_publish(channel.prepare_message("x"), exchange="", routing_key="work")
    snapshot = poller.poll({"work", "absent"}, lambda _id: None)
    assert snapshot.ok and snapshot.length("work") == 3 and snapshot.consumers["work"] == 0
    assert "absent" not in snapshot.lengths
    poller.close()


def test_fleet_adds_flower_and_the_exporter(tmp_path: Path) -> None:
    from exporters.metrics.fleet import processes

    ctx = FleetContext(run_dir=tmp_path, env={"FLEETOPS_BROKER_URL": "redis://127.0.0.1:1/0"})
    specs = processes(ctx)
    assert [s.name for s in specs] == ["flower", "exporter"]
    assert ctx.endpoints["exporter"].startswith("127.0.0.1:")
    assert ctx.endpoints["flower"].startswith("127.0.0.1:")
    assert "exporter" in specs[1].argv
    # The broker in the environment, never on a command line `ps` shows (it may carry a password).
    for spec in specs:
        assert spec.env["FLEETOPS_BROKER_URL"] == "redis://127.0.0.1:1/0"
        assert not any("redis://" in arg for arg in spec.argv)


def test_the_fleets_exporter_and_recorder_follow_the_fleets_broker_not_the_shells_apps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FLEETOPS_APPS exported in the operator's shell reaches every child (child_env merges
    os.environ): it would turn the local fleet's exporter and recorder to other brokers."""
    from exporters.history.fleet import processes as recorder_specs
    from exporters.metrics.fleet import processes as exporter_specs

    monkeypatch.setenv("FLEETOPS_APPS", "prod=redis://prod.example:6379/0")
    ctx = FleetContext(run_dir=tmp_path, env={"FLEETOPS_BROKER_URL": "redis://127.0.0.1:1/0"})
    specs = {s.name: s for s in [*exporter_specs(ctx), *recorder_specs(ctx)]}
    for name in ("exporter", "recorder"):
        assert ctx.child_env(specs[name].env)["FLEETOPS_APPS"] == "", name
    # Apps the fleet itself is given (as the tests give them) are followed.
    given = {"FLEETOPS_APPS": "a=redis://127.0.0.1:1/0", "FLEETOPS_BROKER_URL": "redis://h/0"}
    ctx = FleetContext(run_dir=tmp_path, env=given)
    for spec in [*exporter_specs(ctx), *recorder_specs(ctx)]:
        if spec.name != "flower":
            assert ctx.child_env(spec.env)["FLEETOPS_APPS"] == "a=redis://127.0.0.1:1/0"


def test_beat_runs_and_intervals_become_metrics() -> None:
    state = FleetState(bounds=BOUNDS)
    beat = {"type": "beat-sent", "hostname": "beat@h", "task": "reminders.send_due_soon"}
    state.apply_all([{**beat, "name": "due-soon", "timestamp": 1000.0, "interval_seconds": 60}], 0)
    state.apply_all([{**beat, "name": "due-soon", "timestamp": 1060.5, "interval_seconds": 60}], 1)
    # No entry name: the checker rejects it before the state ("beat without a name" in
    # tests/stream/corpus.py).
    state.apply_all([{**beat, "timestamp": 1061.0}], 1)
    samples = parse(_render(state))
    assert value(samples, "fleetops_beat_last_run_timestamp_seconds", name="due-soon") == 1060.5
    assert value(samples, "fleetops_beat_interval_seconds", name="due-soon") == 60
    assert value(samples, "fleetops_exporter_events_total", type="beat-sent") == 2


def test_breaking_points_are_served_from_the_one_file() -> None:
    samples = parse(_render(FleetState(bounds=BOUNDS), thresholds=load_thresholds()))
    points = breaking_points.current()
    for name, signal in points.signals.items():
        for level, threshold in signal.thresholds().items():
            got = value(samples, "fleetops_breaking_point", signal=name, level=str(level))
            assert got == threshold, (name, level)
    ratio = points.objectives.task_success_ratio
    assert value(samples, "fleetops_objective", objective="task_success_ratio") == ratio


def test_reconnect_backoff_grows_with_jitter_up_to_its_cap_and_resets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Many backoffs side by side, with a seeded generator of their own: the n-th delays of all
    # of them show the n-th ceiling. One run of one backoff could not tell a backoff that
    # grows from one that stays put, since every delay may fall low.
    monkeypatch.setattr(backoff_module, "random", random.Random(7))
    backoffs = [Backoff(initial=0.5, maximum=4.0) for _ in range(300)]
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]  # doubling from the initial delay, then capped
    for attempt, ceiling in enumerate(ceilings):
        delays = [backoff.next_delay() for backoff in backoffs]
        # Full jitter: spread from initial/2 up to the ceiling, never past it.
        assert 0.25 <= min(delays) < 0.25 + 0.1 * ceiling, (attempt, min(delays))
        assert 0.95 * ceiling < max(delays) <= ceiling, (attempt, max(delays))
    for backoff in backoffs:
        backoff.reset()
    delays = [backoff.next_delay() for backoff in backoffs]
    assert 0.95 * 0.5 < max(delays) <= 0.5  # back to the first ceiling


def test_metrics_can_be_restricted_to_named_families() -> None:
    state = _many_series_state(workers=2, names=2, queues=1)
    renderer = Renderer()
    extras_free = _render(state, renderer)
    wanted = frozenset({"celery_worker_up", "fleetops_exporter_events_total"})
    extras = Extras(
        status=StreamStatus(connected=True),
        snapshot=QueueSnapshot(ok=True),
        consumers={},
        overflow_dropped=0,
        last_scrape_seconds=0.0,
        thresholds=Thresholds(),
    )
    text = "".join(renderer.render(state, extras, now=1.0, wall=1003.0, names=wanted))
    assert {name for name, _labels in parse(text)} == wanted
    # Only the exporter's own families: the task series are not even rendered.
    own = frozenset({"fleetops_exporter_events_total"})
    text = "".join(renderer.render(state, extras, now=1.0, wall=1003.0, names=own))
    assert {name for name, _labels in parse(text)} == own
    assert parse(text).items() <= parse(extras_free).items()


def test_the_kombu_poller_on_redis_leaves_consumers_to_the_workers(
    redis_server: RedisServer,
) -> None:
    # kombu's Redis transport (how Sentinel URLs are polled) answers 0 consumers whatever runs.
    redis_server.client().lpush("work", b"{}", b"{}")
    poller = KombuPoller(redis_server.url)
    snapshot = poller.poll({"work"}, lambda _id: None)
    assert snapshot.ok and snapshot.length("work") == 2
    assert snapshot.consumers == {}
    poller.close()


def test_events_dropped_on_overflow_are_counted_in_events_not_messages() -> None:
    from exporters.metrics.app import Exporter

    exporter = Exporter(load(broker_url="redis://127.0.0.1:1/0"))  # never started: no I/O
    multi = [{"type": "worker-heartbeat", "hostname": f"celery@w{i}"} for i in range(4)]
    exporter.apply_batch(RAW, [wire_envelope(multi), wire_envelope(multi)], received_at=0.0)
    assert exporter.overflow_events() == 0
    # The reader drops whole messages, undecoded: 3 of them, at 4 events per message.
    exporter.stream.batches = BatchQueue(max_bytes=10)
    exporter.stream.batches.put(Batch(RAW, [b"x"], 8))
    assert not exporter.stream.batches.put(Batch(RAW, [b"y"] * 3, 8))
    samples = parse(exporter.render().decode())
    assert value(samples, "fleetops_exporter_events_dropped_total", reason="overflow") == 12


def test_scrape_duration_reports_the_previous_full_scrape() -> None:
    from exporters.metrics.app import Exporter

    exporter = Exporter(load(broker_url="redis://127.0.0.1:1/0"))  # never started: no I/O
    first = parse(exporter.render().decode())
    assert value(first, "fleetops_exporter_scrape_duration_seconds") == 0
    full = exporter.last_scrape_seconds
    assert full > 0
    # A filtered answer is not what Prometheus pays for: it leaves the gauge alone.
    exporter.render(frozenset({"fleetops_exporter_events_total"}))
    assert exporter.last_scrape_seconds == full
    second = parse(exporter.render().decode())
    assert value(second, "fleetops_exporter_scrape_duration_seconds") == round(full, 6)


def test_purging_a_worker_named_like_a_group_keeps_the_groups_task_series() -> None:
    """However many groups came before it (a cap on the groups remembered once let a late
    group's series go with a worker of the same name)."""
    state = FleetState(bounds=BOUNDS, limits=Limits(worker_groups=("celery@([a-z0-9]+)-[0-9]+",)))
    for i in range(10_000):  # groups seen before, e.g. from crafted hostnames
        state.worker_group(f"celery@g{i}-1")
    host = "celery@web-1"
    state.apply_all(
        [
            _event("task-sent", "u1", 999.0, host="gen77@web1", name="app.add", queue="math"),
            _event("task-received", "u1", 1000.0, host=host, name="app.add"),
            _event("task-started", "u1", 1001.0, host=host),
            _event("task-succeeded", "u1", 1002.0, host=host, runtime=0.5),
        ],
        1002.0,
    )
    assert "web" in {key[1] for key in state.task_series}
    state.purge_worker("web")  # a worker whose own name, ungrouped, is "web"
    assert "web" in {key[1] for key in state.task_series}
