"""Manual acknowledgements of the kombu reader on a real RabbitMQ: batches carry their last
delivery, the reader acknowledges what it is handed back, and a delivery of a connection that
is gone is never acknowledged on the next one."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from kombu import Connection

from exporters.stream.acks import Delivery
from exporters.stream.backoff import Backoff
from exporters.stream.batches import BatchQueue
from exporters.stream.kombu_reader import KombuEventReader
from exporters.stream.status import StreamStatus
from tests.helpers import wait_for
from tests.history.proxy import OutageProxy
from tests.history.recording import Publisher
from tests.rabbitmq import Vhost

QUEUE = "fleetops.acks-test"
SENT = 5


@pytest.fixture
def proxy(rabbitmq_vhost: Vhost) -> Iterator[OutageProxy]:
    """RabbitMQ behind a proxy the test can cut, as a network failure does."""
    proxy = OutageProxy("127.0.0.1", rabbitmq_vhost.server.port)
    proxy.start()
    yield proxy
    proxy.stop()


def deliveries(batches: BatchQueue, count: int) -> list[Delivery]:
    """The deliveries of the batches that bring ``count`` messages."""
    found: list[Delivery] = []
    received = 0
    deadline = time.monotonic() + 30
    while received < count:
        assert time.monotonic() < deadline, f"{received} of {count} messages read"
        batch = batches.get(timeout=0.5)
        if batch is not None:
            assert batch.delivery is not None
            found.append(batch.delivery)
            received += len(batch.items)
    assert received == count
    return found


def one_more_round(status: StreamStatus) -> None:
    """Wait until the reader has gone once round its loop after now (acks are applied at the
    end of each round)."""
    now = time.monotonic()
    wait_for(lambda: status.last_beat > now, timeout=10)
    started = status.last_beat
    wait_for(lambda: status.last_beat > started, timeout=10)


def ready_messages(broker_url: str) -> int:
    with Connection(broker_url) as conn:
        return conn.default_channel.queue_declare(QUEUE, passive=True).message_count


def test_a_delivery_of_a_lost_connection_is_never_acknowledged_on_the_next(
    rabbitmq_url: str, proxy: OutageProxy
) -> None:
    vhost = rabbitmq_url.rsplit("/", 1)[1]
    batches, status = BatchQueue(), StreamStatus()
    reader = KombuEventReader(
        f"amqp://guest:guest@127.0.0.1:{proxy.port}/{vhost}", batches, status,
        Backoff(initial=0.1, maximum=0.5), durable_queue=QUEUE,
    )  # fmt: skip
    stop = threading.Event()
    thread = threading.Thread(target=reader.run, args=(stop,), daemon=True)
    thread.start()
    publisher = Publisher(rabbitmq_url)
    try:
        wait_for(lambda: status.connected, timeout=30)
        for n in range(SENT):
            publisher.send({"type": "worker-heartbeat", "hostname": f"w{n}@test"})
        first = deliveries(batches, SENT)
        assert first == sorted(first) and first[-1] == Delivery(1, SENT)

        # The connection breaks before anything is acknowledged: RabbitMQ hands the same
        # messages again on the next connection, under the same tags.
        proxy.stop()
        wait_for(lambda: not status.connected, timeout=30)
        proxy.start()
        wait_for(lambda: status.connected and status.connects == 2, timeout=30)
        again = deliveries(batches, SENT)
        assert again[-1] == Delivery(2, SENT)

        # Released late, the old connection's delivery must not acknowledge the new one's
        # messages that carry the same tags.
        reader.acknowledge(first[-1])
        one_more_round(status)
        assert status.unacked == SENT
        reader.acknowledge(Delivery(2, 3))
        wait_for(lambda: status.unacked == SENT - 3, timeout=10)
    finally:
        stop.set()
        thread.join(timeout=30)
        publisher.close()
    assert not thread.is_alive()
    # Closed with two unacknowledged: those two, and only those, wait for the next consumer.
    assert ready_messages(rabbitmq_url) == SENT - 3
