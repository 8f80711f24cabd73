"""Regression tests of three exporter defects: messages lost in the SUBSCRIBE handshake, broken
label text for task names containing ``queue_name``, and the broker password in the log."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporters.metrics.histogram import DEFAULT_BUCKETS
from exporters.metrics.render import Renderer
from exporters.metrics.state import FleetState, TaskSeries
from exporters.stream.backoff import Backoff
from exporters.stream.batches import BatchQueue
from exporters.stream.redis_reader import RedisEventReader
from exporters.stream.resp import command
from exporters.stream.status import StreamStatus
from tests.exporter.process import run_exporter, value
from tests.exporter.test_units import _render as render_text
from tests.helpers import wait_for
from tests.processes import Processes
from tests.servers import RedisServer

EXACT = b"/0.celeryev"
PATTERN = b"/0.celeryev/*"
CHANNEL = b"/0.celeryev/task.multi"


def bulk_array(*parts: bytes | int) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        if isinstance(part, int):
            out.append(b":%d\r\n" % part)
        else:
            out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


def message(payload: bytes) -> bytes:
    return bulk_array(b"message", EXACT, payload)


def pmessage(payload: bytes) -> bytes:
    return bulk_array(b"pmessage", PATTERN, CHANNEL, payload)


class ScriptedRedis:
    """Plays one scripted pub/sub session on a loopback socket, then refuses reconnects.

    It stands in for Redis because the arrival order this test needs (messages in the same
    recv() as the subscription confirmations, a reply cut across two TCP segments) cannot be
    forced on a real Redis: there it depends on how the server's event loop batches writes.
    """

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.received = b""
        self.finished = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> ScriptedRedis:
        self.thread.start()
        return self

    def _serve(self) -> None:
        self.listener.settimeout(10)
        conn, _peer = self.listener.accept()
        # One session only: a reader that lost its place and reconnects gets refused.
        self.listener.close()
        with conn:
            expected = command("SUBSCRIBE", EXACT) + command("PSUBSCRIBE", PATTERN)
            conn.settimeout(10)
            while len(self.received) < len(expected):
                data = conn.recv(4096)
                if not data:
                    return
                self.received += data
            for chunk in self.chunks:
                conn.sendall(chunk)
                # Let the reader's recv() return each chunk on its own.
                time.sleep(0.2)
            self.finished.wait(10)


def _payloads(queue: BatchQueue, count: int, timeout: float = 10.0) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        batch = queue.get(timeout=0.1)
        if batch is not None:
            got.extend(batch.items)
    return got


def test_messages_around_the_subscribe_confirmations_reach_the_queue() -> None:
    # CRLF and a RESP header inside the payload: only the bulk length tells where it ends.
    cut_payload = b'{"type": "task-sent", "split": "\r\n*3\r\n across segments"}'
    split = pmessage(cut_payload)
    cut = len(split) - 20  # inside the payload: a fresh parser would start mid-reply
    first = (
        bulk_array(b"subscribe", EXACT, 1)
        + message(b"before psubscribe")
        + bulk_array(b"psubscribe", PATTERN, 2)
        + pmessage(b"first")
        + pmessage(b"second")
        + split[:cut]
    )
    server = ScriptedRedis([first, split[cut:], pmessage(b"last")]).start()
    queue, status = BatchQueue(), StreamStatus()
    reader = RedisEventReader(
        f"redis://127.0.0.1:{server.port}/0", queue, status, Backoff(initial=0.05, maximum=0.1)
    )
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            reader.run(stop)
        except BaseException as exc:  # a crash of the thread must fail the test, not vanish
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        got = _payloads(queue, 5)
    finally:
        stop.set()
        thread.join(timeout=10)
        # Only now: closing the session earlier would be a disconnect of its own.
        server.finished.set()
    assert got == [
        b"before psubscribe",
        b"first",
        b"second",
        cut_payload,
        b"last",
    ]
    assert not errors
    assert (status.connects, status.last_error) == (1, "")
    assert status.messages == 5
    # Every byte the scripted server sent after the handshake carried a message.
    assert status.bytes == len(first) + len(split) - cut + len(pmessage(b"last"))


def _one_round(redis_server: RedisServer, tag: bytes) -> None:
    """A publisher hammers both channels while a reader subscribes; PUBLISH answers how many
    subscribers got each message, and ours is the only one, so the messages it must receive
    are exactly those PUBLISH counted: no timing guess is involved."""
    client = redis_server.client()
    delivered: list[bytes] = []
    published = 0
    publishing = threading.Event()
    stop_publishing = threading.Event()

    def publish() -> None:
        nonlocal published
        while not stop_publishing.is_set():
            published += 1
            payload = tag + b"-%d" % published
            # Alternate: the exact channel is live from the SUBSCRIBE on, the pattern one
            # only from the PSUBSCRIBE, so messages land between the two confirmations too.
            if client.publish(EXACT if published % 2 else CHANNEL, payload):
                delivered.append(payload)
            if published == 20:
                publishing.set()

    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    assert publishing.wait(10)
    queue, status = BatchQueue(), StreamStatus()
    reader = RedisEventReader(redis_server.url, queue, status, Backoff(0.05, 0.1))
    stop = threading.Event()
    thread = threading.Thread(target=reader.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(delivered) >= 300, timeout=20, message="messages delivered")
        stop_publishing.set()
        publisher.join(timeout=10)
        marker = tag + b"-end"
        # Redis keeps one subscriber's messages in order: once the marker is read, so is
        # everything published before it.
        assert client.publish(CHANNEL, marker) == 1
        got: list[bytes] = []
        deadline = time.monotonic() + 20
        while marker not in got and time.monotonic() < deadline:
            batch = queue.get(timeout=0.1)
            if batch is not None:
                got.extend(batch.items)
    finally:
        stop_publishing.set()
        stop.set()
        thread.join(timeout=10)
        client.close()
    assert got[-1:] == [marker]
    assert got[:-1] == delivered
    assert (status.connects, status.last_error) == (1, "")
    assert status.messages == len(got)


def test_every_message_published_after_subscribing_arrives_from_a_real_redis(
    redis_server: RedisServer,
) -> None:
    # A few rounds: each is a fresh handshake racing the publisher.
    for round_number in range(5):
        _one_round(redis_server, b"r%d" % round_number)


# ---- 2. the exception label of task names containing "queue_name" -------------------------


def _render(state: FleetState, renderer: Renderer) -> str:
    return render_text(state, renderer)


def _state_with(series: dict[tuple[str, str, str], dict[str, int]]) -> FleetState:
    # Series built directly (the dict the renderer reads), not through apply_all: what is
    # under test is the rendering of whatever names the state holds.
    state = FleetState(bounds=DEFAULT_BUCKETS)
    for key, failed in series.items():
        task = TaskSeries(state.bounds)
        task.received = task.started = 1
        task.failed.update(failed)
        state.task_series[key] = task
    return state


def _failed_samples(text: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "celery_task_failed_total"
    ]


@pytest.mark.parametrize(
    ("name", "host", "static"),
    [
        ("app.by_queue_name", "celery@w1", {}),
        ("app.add", "queue_name@w1", {}),
        ("app.add", "celery@w1", {"cluster": 'queue_name="eu"'}),
        ('app."queue_name"\\odd\nname', 'celery@"queue_name"\\w\n1', {"c": 'q\\"\n'}),
    ],
)
def test_the_exception_label_never_splits_a_value(
    name: str, host: str, static: dict[str, str]
) -> None:
    state = _state_with({(name, host, "math"): {"ValueError": 2}, (name, host, "io"): {}})
    samples = _failed_samples(_render(state, Renderer(static_labels=static)))
    assert sorted(samples, key=lambda s: s[0]["queue_name"]) == [
        ({"name": name, "hostname": host, "exception": "", "queue_name": "io", **static}, 0),
        (
            {"name": name, "hostname": host, "exception": "ValueError", "queue_name": "math"}
            | static,
            2,
        ),
    ]


def test_failed_counter_text_of_plain_names_is_unchanged() -> None:
    state = _state_with(
        {("app.add", "celery@w1", "math"): {"ValueError": 1, "KeyError": 3}, ("a", "h", "q"): {}}
    )
    text = _render(state, Renderer(static_labels={"cluster": "eu"}))
    lines = [line for line in text.splitlines() if line.startswith("celery_task_failed_total")]
    assert lines == [
        'celery_task_failed_total{name="app.add",hostname="celery@w1",exception="ValueError",'
        'queue_name="math",cluster="eu"} 1',
        'celery_task_failed_total{name="app.add",hostname="celery@w1",exception="KeyError",'
        'queue_name="math",cluster="eu"} 3',
        'celery_task_failed_total{name="a",hostname="h",exception="",queue_name="q",'
        'cluster="eu"} 0',
    ]


# ---- 3. no password in what the exporter logs -----------------------------------------------

PASSWORD = "s3cret-Pw"


@pytest.fixture
def redis_with_password(processes: Processes) -> RedisServer:
    return RedisServer(processes, password=PASSWORD).start()


def test_the_exporter_logs_the_broker_url_without_its_password(
    redis_with_password: RedisServer, processes: Processes
) -> None:
    port = redis_with_password.port
    url = f"redis://default:{PASSWORD}@127.0.0.1:{port}/0"
    exporter = run_exporter(processes, url)
    try:
        # Connected with the password (AUTH through the reader's handshake), not just serving.
        wait_for(
            lambda: value(exporter.metrics(), "fleetops_exporter_event_stream_up") == 1,
            timeout=30,
            message="event stream up",
        )
        wait_for(lambda: "serving http" in exporter.log(), timeout=30, message="start line")
    finally:
        exporter.stop()
    log = exporter.log()
    assert f"/metrics for redis://default:***@127.0.0.1:{port}/0" in log
    assert PASSWORD not in log


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("redis://default:pw@redis.internal:6380/2", "redis://default:***@redis.internal:6380/2"),
        (
            "rediss://app:p%40ss%3Aw@cache.example.com:6380/0?ssl_cert_reqs=required",
            "rediss://app:***@cache.example.com:6380/0?ssl_cert_reqs=required",
        ),
        (
            "amqp://guest:guest@rabbit:5672/fleet%2Fprod",
            "amqp://guest:***@rabbit:5672/fleet%2Fprod",
        ),
        ("amqp://guest:pa@ss@rabbit//", "amqp://guest:***@rabbit//"),
        (
            "postgresql+psycopg://history:hunter2@db:5432/history?sslmode=require",
            "postgresql+psycopg://history:***@db:5432/history?sslmode=require",
        ),
        ("sqlite:////var/lib/fleetops/history.db", "sqlite:////var/lib/fleetops/history.db"),
        ("sqlite:///data/a@b.db", "sqlite:///data/a@b.db"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://user@127.0.0.1:6379/0", "redis://user@127.0.0.1:6379/0"),
        ("redis://user:@127.0.0.1:6379/0", "redis://user:@127.0.0.1:6379/0"),
        ("memory://", "memory://"),
        ("", ""),
        ("not a url", "not a url"),
        # Odd input that urllib.parse cannot take: still masked, never raised.
        ("redis://u:pw@[::1:6379/0", "redis://***@[::1:6379/0"),
        ("redis://u:pw@host:notaport/0", "redis://u:***@host:notaport/0"),
        ("redis://u:pw\t@host/0", "redis://***@host/0"),
        ("redis://u:pa/ss@host/0", "redis://***@host/0"),
        ("amqp://u:p#w@rabbit/vhost", "amqp://***@rabbit/vhost"),
        ("redis://u:p?w@host/0", "redis://***@host/0"),
        ("redis://[::1]:6379/0?client_name=a@b", "redis://[::1]:6379/0?client_name=a@b"),
        ("redis://u:pw@[::1]:6379/0", "redis://u:***@[::1]:6379/0"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    from fleetops.urls import redact_url

    assert redact_url(url) == shown


def test_redact_url_never_raises() -> None:
    from fleetops.urls import redact_url

    assert redact_url(None) == "None"  # type: ignore[arg-type]
    assert redact_url(b"redis://u:pw@h") == "b'redis://***@h'"  # type: ignore[arg-type]
