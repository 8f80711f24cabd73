"""RabbitMQ through its management API: a virtual host of the module's own on the session's
node (management plugin on), one real worker holding tasks, the poller the exporter builds for
a RabbitMQ app, and what the exporter renders from it."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from celery import Celery
from pydantic import ValidationError

from exporters.metrics.pollers import broker_poller
from exporters.metrics.queues import QueueSnapshot
from exporters.metrics.rabbitmq_management import (
    ENABLE_HINT,
    ManagementApi,
    ManagementError,
    RabbitMQPoller,
    management_url_for,
)
from exporters.metrics.render import Extras, Renderer, Thresholds
from exporters.metrics.settings import ExporterSettings
from exporters.metrics.state import FleetState
from exporters.stream.status import StreamStatus
from fleetops.fleet.spec import free_port
from tests.exporter.process import Samples, parse, value
from tests.helpers import wait_for
from tests.processes import processes_in
from tests.rabbitmq import RabbitMQServer, Vhost
from tests.servers import CeleryProcess, run_worker
from workers.client import client_app

QUEUE = "maintenance"  # the worker's queue: x-max-priority, its tasks sent with priority 3
IDLE_QUEUE = "reminders"  # no worker: its message waits, without a timestamp
STAMPED_QUEUE = "images"  # no worker: a task sent with delay(), no option, waits there
SENT = 5
# The worker holds one task running and one prefetched (acks_late: both unacknowledged).
PREFETCH = 2
# The messages' timestamps, oldest first, 100 s apart. RabbitMQ's head_message_timestamp is
# that of the oldest message the queue holds, delivered and unacknowledged ones included: the
# first one sent, which the worker runs.
OLDEST_AGE = 500


@dataclass
class Fleet:
    vhost: Vhost
    worker: CeleryProcess
    client: Celery


def never_sent(_task_id: str) -> float | None:
    return None


@pytest.fixture(scope="module")
def fleet(
    rabbitmq_node: RabbitMQServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    run_dir = tmp_path_factory.mktemp("rabbitmq-management")
    # The worker stops before its virtual host goes.
    with rabbitmq_node.vhost() as vhost, processes_in(run_dir) as processes:
        env = {
            "FLEETOPS_BROKER_URL": vhost.url,
            "FLEETOPS_RESULT_BACKEND": "rpc://",
            "FLEETOPS_DATA_DIR": str(run_dir),
            "FLEETOPS_DATABASE_URL": f"sqlite:///{run_dir / 'fleetops.db'}",
            "FLEETOPS_WORKER_PREFETCH_MULTIPLIER": str(PREFETCH),
        }
        worker = run_worker(processes, "rmq@127.0.0.1", QUEUE, env, 1, "solo")
        client = client_app(vhost.url, "fleetops-test-client")
        now = int(time.time())
        # Oldest first: the worker takes the first PREFETCH, the others wait.
        for n in range(SENT):
            age = OLDEST_AGE - n * 100
            client.send_task("maintenance.probe", kwargs={"duration": 600}, queue=QUEUE,
                             timestamp=now - age)  # fmt: skip
        publish_untimestamped(client, IDLE_QUEUE)
        client.signature("images.usual").delay()
        try:
            yield Fleet(vhost, worker, client)
        finally:
            client.close()
            # Its tasks sleep for minutes: a warm shutdown would wait for them.
            worker.kill()


def publish_untimestamped(client: Celery, name: str) -> None:
    """A message without the timestamp property, as a publisher other than Celery (or a
    client without fleetops' publish hook) sends it: the fleet's tasks are all stamped."""
    queue = client.amqp.queues[name]
    with client.producer_or_acquire() as producer:
        producer.publish(
            {"not": "a task"}, exchange=queue.exchange, routing_key=name, declare=[queue],
            serializer="json",
        )  # fmt: skip


def rendered(snapshot: QueueSnapshot) -> Samples:
    extras = Extras(
        status=StreamStatus(connected=True),
        snapshot=snapshot,
        consumers={},
        overflow_dropped=0,
        last_scrape_seconds=0.0,
        thresholds=Thresholds(),
    )
    state = FleetState(bounds=(1.0,))
    return parse("".join(Renderer().render(state, extras, time.monotonic(), time.time())))


def settled(poller: RabbitMQPoller) -> QueueSnapshot:
    """The first poll that sees the worker holding its tasks (statistics lag 0.5 s here)."""

    def poll() -> QueueSnapshot | None:
        snap = poller.poll({QUEUE, IDLE_QUEUE}, never_sent)
        held = snap.unacked.get(QUEUE) == PREFETCH and snap.length(QUEUE) == SENT - PREFETCH
        # The consumer count comes with other statistics than the message counts: seen 0 with
        # both tasks already held.
        held = held and snap.consumers.get(QUEUE) == 1
        return snap if held and snap.length(IDLE_QUEUE) == 1 else None

    return wait_for(poll, timeout=60, message="the worker holding its prefetched tasks")


def test_management_api_tells_unacked_ready_consumers_and_oldest_age(fleet: Fleet) -> None:
    settings = ExporterSettings(
        broker_url=fleet.vhost.url,
        exporter_rabbitmq_management_urls={"default": fleet.vhost.management_url},
    )
    poller = broker_poller(fleet.vhost.url, settings, "default")
    assert isinstance(poller, RabbitMQPoller)
    try:
        snap = settled(poller)
    finally:
        poller.close()
    assert snap.management_up == 1 and snap.management_errors == {}
    samples = rendered(snap)
    assert value(samples, "fleetops_broker_management_up") == 1
    assert value(samples, "celery_queue_length", queue_name=QUEUE) == SENT - PREFETCH
    assert value(samples, "fleetops_queue_unacked", queue_name=QUEUE) == PREFETCH
    assert value(samples, "celery_active_consumer_count", queue_name=QUEUE) == 1
    assert value(samples, "celery_active_consumer_count", queue_name=IDLE_QUEUE) == 0
    # One x-max-priority queue; its ready messages split by the priority they were sent with.
    by_priority = value(
        samples, "fleetops_queue_length_by_priority", queue_name=QUEUE, priority="3"
    )
    assert by_priority == SENT - PREFETCH
    # The oldest message not acknowledged yet: the one the worker runs.
    age = value(samples, "fleetops_queue_oldest_message_age_seconds", queue_name=QUEUE)
    assert age is not None and OLDEST_AGE <= age < OLDEST_AGE + 60
    # A message without a timestamp: the broker cannot tell its age, so no made-up one.
    assert (
        value(samples, "fleetops_queue_oldest_message_age_seconds", queue_name=IDLE_QUEUE) is None
    )
    # Celery's own queues (events, remote control) are not task queues.
    assert not [name for (metric, labels), _v in samples.items() if metric == "celery_queue_length"
                for key, name in labels if key == "queue_name" and "pidbox" in name]  # fmt: skip


def test_tasks_sent_the_usual_way_tell_their_age(fleet: Fleet) -> None:
    """A task sent with delay() and no option carries the AMQP timestamp (the fleet's publish
    hook): RabbitMQ tells head_message_timestamp, so the oldest-message age appears."""
    poller = RabbitMQPoller(fleet.vhost.url, management_url=fleet.vhost.management_url)
    try:
        snap = wait_for(
            lambda: (got := poller.poll({STAMPED_QUEUE}, never_sent)).length(STAMPED_QUEUE) == 1
            and got,
            timeout=30, message="the task waiting in its queue",
        )  # fmt: skip
    finally:
        poller.close()
    samples = rendered(snap)
    age = value(samples, "fleetops_queue_oldest_message_age_seconds", queue_name=STAMPED_QUEUE)
    # Sent when the module's fleet started, moments ago.
    assert age is not None and 0 <= age < 300


@pytest.mark.parametrize(
    ("case", "reason", "advice"),
    [
        ("wrong password", "unauthorized", "monitoring"),
        ("user without the management tag", "unauthorized", "monitoring"),
        ("plugin off", "unreachable", ENABLE_HINT),
    ],
)
def test_management_api_down_or_refusing_falls_back_to_amqp(
    fleet: Fleet, case: str, reason: str, advice: str, caplog: pytest.LogCaptureFixture
) -> None:
    broker_url = fleet.vhost.url
    management_url = fleet.vhost.management_url
    if case == "wrong password":
        management_url = management_url.replace("http://", "http://guest:wrong@")
    elif case == "user without the management tag":
        # No credentials in the management URL: the broker URL's user, refused by the API.
        broker_url = fleet.vhost.add_user("amqp-only", "secret-pw")
    else:
        management_url = f"http://127.0.0.1:{free_port()}"
    poller = RabbitMQPoller(broker_url, management_url=management_url, timeout=2)
    caplog.set_level(logging.INFO, logger="exporters.metrics.rabbitmq_management")
    try:
        first = poller.poll({QUEUE, IDLE_QUEUE}, never_sent)
        second = poller.poll({QUEUE, IDLE_QUEUE}, never_sent)
    finally:
        poller.close()
    samples = rendered(second)
    assert value(samples, "fleetops_broker_management_up") == 0
    assert value(samples, "fleetops_broker_management_errors_total", reason=reason) == 2
    # AMQP still tells ready messages and consumers (its own, exact numbers, no lag)...
    assert value(samples, "celery_queue_length", queue_name=QUEUE) == SENT - PREFETCH
    assert value(samples, "celery_active_consumer_count", queue_name=QUEUE) == 1
    assert value(samples, "celery_queue_length", queue_name=IDLE_QUEUE) == 1
    # ...but not what only the management API knows.
    assert value(samples, "fleetops_queue_unacked", queue_name=QUEUE) is None
    assert first.ok and first.management_up == 0
    # One line says what to do, not one per poll; the password is not in it.
    lines = [r.getMessage() for r in caplog.records if "management API" in r.getMessage()]
    assert len(lines) == 1, lines
    assert advice in lines[0] and "wrong" not in lines[0] and "secret-pw" not in lines[0]


class HostileApi(BaseHTTPRequestHandler):
    """A fake management API, since no real RabbitMQ answers like this: each path answers one
    hostile way (the poller's URL path prefix picks it)."""

    def do_GET(self) -> None:
        # The poller gives up reading huge and slow answers, as it should.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._answer(self.path.split("/")[1])

    def _answer(self, kind: str) -> None:
        if kind == "slow":
            time.sleep(3)
        if kind == "huge":
            self.send_response(200)
            self.end_headers()  # no length given: the reader must stop by itself
            for _ in range(64):
                self.wfile.write(b"[" + b"0," * 32_768)
            return
        if kind == "trickle":
            # Each read comes in time; the whole answer never does.
            self.send_response(200)
            self.end_headers()
            for _ in range(40):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.25)
            return
        body = {
            "notjson": b"<html>proxy error</html>",
            "notlist": b'{"error": "none"}',
            "html500": b"oops",
            "slow": b"[]",
        }.get(kind, b"[]")
        self.send_response(500 if kind == "html500" else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(scope="module")
def hostile_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), HostileApi)
    server.daemon_threads, server.block_on_close = True, False  # slow answers end by themselves
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("notjson", "not_json"),
        ("notlist", "bad_answer"),
        ("html500", "http_error"),
        ("huge", "too_large"),
        ("slow", "timeout"),
        ("trickle", "timeout"),
    ],
)
def test_hostile_management_answers_are_counted_and_amqp_answers(
    fleet: Fleet, hostile_api: str, kind: str, reason: str
) -> None:
    poller = RabbitMQPoller(fleet.vhost.url, management_url=f"{hostile_api}/{kind}", timeout=1)
    poller.api.max_body = 1024 * 1024  # type: ignore[union-attr]
    try:
        snap = poller.poll({QUEUE}, never_sent)
    finally:
        poller.close()
    assert snap.management_errors == {reason: 1}
    assert snap.management_up == 0 and snap.length(QUEUE) == SENT - PREFETCH


def test_hostile_fields_are_left_out_and_counted() -> None:
    """Parsing only: what a broken proxy or a future version might put in a queue's fields."""
    api = ManagementApi("http://127.0.0.1:1", "/", "guest", "guest")
    answer = b"""[
        {"name": "ok", "messages_ready": 2, "messages_unacknowledged": 1, "consumers": 1,
         "head_message_timestamp": 1000000000,
         "backing_queue_status": {"priority_lengths": {"0": 1, "9": 1}}},
        {"name": "wrong-types", "messages_ready": 1, "messages_unacknowledged": "3",
         "consumers": true, "head_message_timestamp": "yesterday",
         "backing_queue_status": "lazy"},
        {"name": "huge", "messages_ready": 1e300, "consumers": -1},
        {"name": "future", "messages_ready": 1, "head_message_timestamp": 99999999999999},
        {"name": "bad-split", "messages_ready": 5,
         "backing_queue_status": {"priority_lengths": {"0": 1, "x": 2}}},
        {"name": "no-stats-yet"},
        {"name": "%s", "messages_ready": 1},
        "not an object", {"messages_ready": 1}
    ]""".replace(b"%s", b"q" * 256)
    queues = {q.name: q for q in api.parse(answer)}
    assert set(queues) == {"ok", "wrong-types", "future", "bad-split"}
    ok = queues["ok"]
    assert (ok.ready, ok.unacked, ok.consumers, ok.head_timestamp) == (2, 1, 1, 1e9)
    assert ok.by_priority == {0: 1, 9: 1}
    wrong = queues["wrong-types"]
    assert (wrong.unacked, wrong.consumers, wrong.head_timestamp) == (None, None, None)
    assert queues["future"].head_timestamp is None
    assert queues["bad-split"].by_priority == {}
    # 4 wrong types, huge, future, bad split, a too long name, a non-object, a nameless queue
    assert api.bad_values == 10
    api.close()
    for body, reason in [(b"[NaN]", "not_json"), (b"\xff\xfe", "not_json"), (b"3", "bad_answer")]:
        with pytest.raises(ManagementError) as error:
            api.parse(body)
        assert error.value.reason == reason


def test_management_url_defaults_from_the_broker_url() -> None:
    assert management_url_for("amqp://u:p@rabbit:5673/vh") == "http://rabbit:15672"
    assert management_url_for("amqps://u:p@rabbit/") == "https://rabbit:15671"
    assert management_url_for("pyamqp://") == "http://localhost:15672"
    poller = RabbitMQPoller("amqp://u:p%40x@rabbit:5672/v%2Fh")
    assert poller.api is not None
    assert poller.api.queues_url == "http://rabbit:15672/api/queues/v%2Fh"
    assert poller.api.client.auth is not None
    poller.close()
    assert RabbitMQPoller("amqp://rabbit//", management_url="off").api is None
    one = ExporterSettings(exporter_rabbitmq_management_urls="http://m:1")  # type: ignore[arg-type]
    assert one.rabbitmq_management_url("any") == "http://m:1"
    many = ExporterSettings(exporter_rabbitmq_management_urls="a=http://m:1,b=off")  # type: ignore[arg-type]
    assert (many.rabbitmq_management_url("b"), many.rabbitmq_management_url("c")) == ("off", None)
    with pytest.raises(ValueError, match="http"):
        ExporterSettings(exporter_rabbitmq_management_urls="a=ftp://m")  # type: ignore[arg-type]
    # A misplaced URL where an app's name goes is named by its place, never shown.
    for given in ('{"u:s3cret@h": "http://m:1"}', "u:s3cret@h=http://m:1"):
        with pytest.raises(ValidationError) as refused:
            ExporterSettings(exporter_rabbitmq_management_urls=given)  # type: ignore[arg-type]
        # The message itself; ConfigError leaves out the input it was given (fleetops/errors.py).
        message = refused.value.errors()[0]["msg"]
        assert "s3cret" not in message and "entry 1" in message, message
