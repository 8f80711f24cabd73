"""The exporter against a real Redis, real Celery workers and a real exporter process."""

from __future__ import annotations

import signal
from collections.abc import Callable

import httpx
import pytest
from celery import Celery

from exporters.metrics.app import latency_breaking_points
from exporters.stream.events import REJECT_REASONS
from fleetops import breaking_points
from tests.exporter.process import ExporterProcess, Samples, parse, total, value
from tests.helpers import wait_for
from tests.servers import CeleryProcess, RedisServer

pytestmark = pytest.mark.slow


def _probe(client: Celery, fail: str | None = None, **options: object) -> None:
    kwargs = {"duration": 0.0, "fail": fail}
    client.send_task("maintenance.probe", kwargs=kwargs, queue="maintenance", **options)


Watched = Callable[..., tuple[ExporterProcess, CeleryProcess]]


@pytest.fixture
def watched_worker(
    start_exporter: Callable[..., ExporterProcess], start_worker: Callable[..., CeleryProcess]
) -> Watched:
    """An exporter started with ``exporter_args``, then a worker on maintenance it watches."""

    def start(
        name: str, concurrency: int = 1, exporter_args: tuple[str, ...] = ()
    ) -> tuple[ExporterProcess, CeleryProcess]:
        exporter = start_exporter(*exporter_args)
        return exporter, start_worker(queues="maintenance", name=name, concurrency=concurrency)

    return start


def test_counts_equal_what_the_workers_did(watched_worker: Watched, client: Celery) -> None:
    exporter, worker = watched_worker("counting", concurrency=2)
    host = worker.hostname
    for _ in range(7):
        _probe(client)
    for _ in range(3):
        _probe(client, fail="ValueError")
    _probe(client, fail="KeyError")

    def all_done() -> bool:
        m = exporter.metrics()
        done = total(m, "celery_task_succeeded_total") + total(m, "celery_task_failed_total")
        return done >= 11 and bool(m)

    wait_for(all_done, timeout=60, message="11 tasks finished")
    m = exporter.metrics()
    task = {"name": "maintenance.probe", "queue_name": "maintenance"}
    assert total(m, "celery_task_sent_total", **task) == 11
    assert value(m, "celery_task_received_total", hostname=host, **task) == 11
    assert value(m, "celery_task_started_total", hostname=host, **task) == 11
    assert value(m, "celery_task_succeeded_total", hostname=host, **task) == 7
    failed = {"hostname": host, **task}
    assert value(m, "celery_task_failed_total", exception="ValueError", **failed) == 3
    assert value(m, "celery_task_failed_total", exception="KeyError", **failed) == 1
    assert value(m, "celery_task_retried_total", hostname=host, **task) == 0
    # Histograms: the peer's runtime for successes, ours for both outcomes, wait and latency.
    assert value(m, "celery_task_runtime_count", hostname=host, **task) == 7
    assert value(m, "fleetops_task_runtime_seconds_count", state="succeeded", **task) == 7
    assert value(m, "fleetops_task_runtime_seconds_count", state="failed", **task) == 4
    assert value(m, "celery_task_queue_wait_time_count", **task) == 11
    assert value(m, "fleetops_task_latency_seconds_count", **task) == 11
    first_breaking_point = repr(min(latency_breaking_points()))
    assert value(m, "fleetops_task_latency_seconds_bucket", le=first_breaking_point, **task) == 11
    # Event counters by type match exactly too.
    assert value(m, "fleetops_exporter_events_total", type="task-sent") == 11
    assert value(m, "fleetops_exporter_events_total", type="task-failed") == 4
    # Every reason is rendered, at 0: an empty sum would also be 0 for a misspelt name.
    rejected = [v for (n, _), v in m.items() if n == "fleetops_exporter_events_rejected_total"]
    assert len(rejected) == len(REJECT_REASONS) and not any(rejected)
    # The worker: up, telemetry, processed; the queue: consumed by one worker, empty.
    assert value(m, "celery_worker_up", hostname=host) == 1
    wait_for(
        lambda: value(exporter.metrics(), "fleetops_worker_processed_total", hostname=host) == 11,
        timeout=30,
        message="a heartbeat reporting 11 processed tasks",
    )
    assert value(m, "fleetops_worker_pool_size", hostname=host) == 2
    assert (value(m, "fleetops_worker_memory_rss_bytes", hostname=host) or 0) > 0
    # Queue depth comes from the broker poll (every --poll-interval, 0.5 s here), not from events:
    # wait for one.
    wait_for(
        lambda: value(exporter.metrics(), "celery_queue_length", queue_name="maintenance") == 0,
        timeout=30,
        message="a broker poll showing maintenance empty",
    )
    wait_for(
        lambda: (
            value(exporter.metrics(), "celery_active_consumer_count", queue_name="maintenance") == 1
        ),
        timeout=30,
        message="the worker reported as the consumer of maintenance",
    )
    # The four final failures went to the dead-letter queue, labelled with their queue.
    wait_for(
        lambda: (
            value(exporter.metrics(), "fleetops_dead_letter_length", queue_name="maintenance") == 4
        ),
        timeout=30,
        message="4 dead letters from maintenance",
    )
    # Thresholds come from the breaking points file.
    breaking = breaking_points.current().task_latency.breaking
    assert value(m, "fleetops_breaking_point", signal="task_latency", level="breaking") == breaking
    assert exporter.healthz() == 200


def test_priority_sub_queues_are_counted(
    start_exporter: Callable[..., ExporterProcess], client: Celery
) -> None:
    exporter = start_exporter("--queue", "images")
    # No worker consumes images: every message waits, in the sub-queue of its priority.
    sent = {0: 2, 3: 3, 6: 1, 9: 4}
    for priority, count in sent.items():
        for _ in range(count):
            client.send_task("images.process", args=["x"], queue="images", priority=priority)

    def counted() -> bool:
        return value(exporter.metrics(), "celery_queue_length", queue_name="images") == 10

    wait_for(counted, timeout=30, message="10 messages counted in images")
    m = exporter.metrics()
    for priority, count in sent.items():
        got = value(
            m, "fleetops_queue_length_by_priority", queue_name="images", priority=str(priority)
        )
        assert got == count, f"priority {priority}"
    assert value(m, "celery_active_consumer_count", queue_name="images") == 0
    # The oldest message's age comes from its task-sent event and grows while it waits.
    age = value(m, "fleetops_queue_oldest_message_age_seconds", queue_name="images")
    assert age is not None and age > 0
    wait_for(
        lambda: (value(exporter.metrics(), "fleetops_queue_oldest_message_age_seconds",
                       queue_name="images") or 0) > age + 0.5,
        timeout=30,
        message="the oldest message ageing",
    )  # fmt: skip
    arrival = value(m, "fleetops_queue_arrival_rate", queue_name="images")
    assert arrival is not None and arrival > 0
    assert value(m, "fleetops_queue_drain_seconds", queue_name="images") == float("inf")


def test_a_killed_worker_goes_down_then_is_purged(watched_worker: Watched, client: Celery) -> None:
    timeouts = ("--worker-timeout", "4", "--purge-offline-after", "6")
    exporter, worker = watched_worker("doomed", exporter_args=timeouts)
    host = worker.hostname
    _probe(client)
    wait_for(
        lambda: value(exporter.metrics(), "celery_task_succeeded_total", hostname=host,
                      name="maintenance.probe", queue_name="maintenance") == 1,
        timeout=60,
        message="the worker's task counted",
    )  # fmt: skip
    assert value(exporter.metrics(), "celery_worker_up", hostname=host) == 1
    worker.kill(signal.SIGKILL)  # no worker-offline event: only silence tells
    wait_for(
        lambda: value(exporter.metrics(), "celery_worker_up", hostname=host) == 0,
        timeout=30,
        message="the killed worker reported down",
    )
    assert value(exporter.metrics(), "celery_worker_tasks_active", hostname=host) == 0
    # A crash, not a clean stop: CeleryWorkerDown must still fire for it.
    assert value(exporter.metrics(), "fleetops_worker_stopped_cleanly", hostname=host) == 0

    def purged() -> bool:
        m = exporter.metrics()
        return not any(dict(labels).get("hostname") == host for (_n, labels) in m)

    wait_for(purged, timeout=40, message="every series of the killed worker purged")
    # Producer-side series (no worker hostname) are kept: the sends really happened.
    assert total(exporter.metrics(), "celery_task_sent_total", name="maintenance.probe") == 1


def test_a_worker_stopped_on_purpose_is_down_and_marked_stopped_cleanly(
    watched_worker: Watched,
) -> None:
    timeouts = ("--worker-timeout", "4", "--purge-offline-after", "600")
    exporter, worker = watched_worker("scaled-down", exporter_args=timeouts)
    host = worker.hostname
    wait_for(
        lambda: value(exporter.metrics(), "celery_worker_up", hostname=host) == 1,
        timeout=60,
        message="the worker's heartbeats seen",
    )
    assert value(exporter.metrics(), "fleetops_worker_stopped_cleanly", hostname=host) == 0
    worker.stop()  # SIGTERM: a warm shutdown, which sends worker-offline on the way out
    wait_for(
        lambda: value(exporter.metrics(), "fleetops_worker_stopped_cleanly", hostname=host) == 1,
        timeout=30,
        message="the worker's clean stop seen",
    )
    # Down as celery-exporter reports it; the alert tells the two apart with the new gauge.
    assert value(exporter.metrics(), "celery_worker_up", hostname=host) == 0


def test_redis_restarted_mid_stream(
    redis_server: RedisServer, watched_worker: Watched, client: Celery
) -> None:
    exporter, worker = watched_worker("survivor")
    host = worker.hostname
    labels = {"name": "maintenance.probe", "hostname": host, "queue_name": "maintenance"}

    def probes_succeed(count: int, then: int, when: str) -> None:
        """Send ``count`` probes; wait until ``then`` successes are counted in all."""
        for _ in range(count):
            _probe(client)
        wait_for(
            lambda: value(exporter.metrics(), "celery_task_succeeded_total", **labels) == then,
            timeout=60,
            message=f"{then} successes {when}",
        )

    probes_succeed(3, then=3, when="before the restart")
    assert exporter.healthz() == 200

    # The queue poller learns the queue from the first task-sent; wait for its next poll, or
    # `before` may predate the queue's first length.
    def polled() -> Samples | None:
        m = exporter.metrics()
        return m if value(m, "celery_queue_length", queue_name="maintenance") is not None else None

    before = wait_for(polled, timeout=30, message="the queue's length polled")

    redis_server.stop()
    wait_for(lambda: exporter.healthz() == 503, timeout=30, message="/healthz unhealthy")
    down = exporter.metrics()
    # Previous values are kept while the broker is away.
    assert value(down, "celery_task_succeeded_total", **labels) == 3
    assert value(down, "fleetops_exporter_broker_up") == 0
    assert value(down, "celery_queue_length", queue_name="maintenance") == value(
        before, "celery_queue_length", queue_name="maintenance"
    )

    redis_server.start()
    wait_for(lambda: exporter.healthz() == 200, timeout=60, message="/healthz healthy again")
    assert (value(exporter.metrics(), "fleetops_exporter_broker_reconnects_total") or 0) >= 1
    # The worker reconnects by itself; new work is counted on top of the old.
    wait_for(
        lambda: value(exporter.metrics(), "celery_worker_up", hostname=host) == 1,
        timeout=60,
        message="worker heard from after the restart",
    )
    probes_succeed(2, then=5, when="after the restart")
    assert exporter.alive()


MALFORMED = [
    b"not json at all",
    b"[1, 2, 3]",
    b'{"no": "body"}',
    b'{"body": "%%%not base64%%%", "properties": {"body_encoding": "base64"}}',
    b'{"body": "bm90IGpzb24=", "properties": {"body_encoding": "base64"}}',
    b'{"body": "gASVAAAAAAAAAAA=", "content-type": "application/x-python-serialize",'
    b' "properties": {"body_encoding": "base64"}}',
    b'{"body": {"type": "task-succeeded"}}',  # no uuid, no hostname
    b'{"body": [{"type": "task-failed", "uuid": 7, "hostname": null}, 42]}',
    b'{"body": {"type": "made-up-event", "hostname": "x@y"}}',
    b'{"body": {"type": "worker-heartbeat", "hostname": "celery@odd", "timestamp": "soon"}}',
    '{"body": "\u00ff\u00fe"}'.encode(),
]


def test_malformed_events_are_counted_and_survived(
    redis_server: RedisServer,
    start_exporter: Callable[..., ExporterProcess],
    client: Celery,
) -> None:
    exporter = start_exporter()
    redis = redis_server.client()
    for channel in ("/0.celeryev/task.multi", "/0.celeryev/worker.heartbeat", "/0.celeryev"):
        for payload in MALFORMED:
            assert redis.publish(channel, payload) >= 1
    # A real producer's task-sent event after the garbage: read in order on the same stream,
    # so once it is counted every malformed message before it has been handled.
    _probe(client)
    wait_for(
        lambda: total(exporter.metrics(), "celery_task_sent_total", name="maintenance.probe") == 1,
        timeout=60,
        message="a real event counted after the garbage",
    )
    m = exporter.metrics()
    # Per channel, by reason: "not json at all", a body of bad JSON and one of bad UTF-8; an
    # array, no body and a pickle; bad base64; no hostname (twice); 42 in a task.multi; a
    # made-up type. The heartbeat dated "soon" is kept, dated now, and counted as repaired.
    per_channel = {"not_json": 3, "bad_envelope": 3, "bad_body": 1, "missing_field": 2,
                   "not_an_object": 1, "unknown_type": 1}  # fmt: skip
    for reason, count in per_channel.items():
        assert value(m, "fleetops_exporter_events_rejected_total", reason=reason) == 3 * count, m
    assert total(m, "fleetops_exporter_events_rejected_total") == 3 * sum(per_channel.values())
    assert value(m, "fleetops_exporter_events_corrected_total", reason="bad_number") == 3
    # Only the heartbeat dated "soon" is a heartbeat here (no worker runs): kept on each channel.
    assert value(m, "fleetops_exporter_events_total", type="worker-heartbeat") == 3
    # The exporter's own counters alone, the way prometheus_client filters: ?name[]=...
    own = httpx.get(f"{exporter.url}/metrics?name[]=fleetops_exporter_events_rejected_total")
    assert {name for name, _ in parse(own.text)} == {"fleetops_exporter_events_rejected_total"}
    assert exporter.healthz() == 200
    assert exporter.alive()
