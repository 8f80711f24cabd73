"""On RabbitMQ the recorder acknowledges a delivery only once its events are committed: a real
`fleetops recorder` process, killed with SIGKILL while it holds events it has read but not
written, gets them again from its durable queue when it restarts."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
from kombu import Connection

from exporters.history.fleet import processes as recorder_specs
from fleetops.fleet.spec import FleetContext
from tests.exporter.process import Samples, parse, total, value
from tests.helpers import wait_for
from tests.history.recording import Publisher
from tests.history.test_recorder import all_written, expected_states, lifecycles
from tests.processes import Child, Processes

QUEUE = "fleetops.history-killed"


def scrape(recorder: Child) -> Samples:
    recorder.alive()
    response = httpx.get(recorder.spec.url or "", timeout=10)
    response.raise_for_status()
    return parse(response.text)


UNACKED = "fleetops_history_unacknowledged_messages"


def held(samples: Samples) -> float:
    """Events the recorder consumed and has not committed yet."""
    consumed = total(samples, "fleetops_history_events_total")
    return consumed - (value(samples, "fleetops_history_events_written_total") or 0)


def queued_messages(broker_url: str) -> int:
    with Connection(broker_url) as conn:
        return conn.default_channel.queue_declare(QUEUE, passive=True).message_count


class Publishing(threading.Thread):
    """Sends task lifecycles the way workers do, on its own thread, while the test kills and
    restarts the recorder."""

    def __init__(self, broker_url: str, batches: list[list[dict]]) -> None:
        super().__init__(daemon=True)
        self.publisher = Publisher(broker_url)
        self.batches = batches
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for events in self.batches:
                self.publisher.send_all(events)
                self.sent += 1
        except BaseException as exc:  # said by the test, not lost on this thread
            self.error = exc
        finally:
            self.publisher.close()


def test_on_rabbitmq_a_recorder_killed_mid_stream_loses_nothing(
    rabbitmq_url: str, processes: Processes, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    database = f"sqlite:///{data / 'history.db'}"
    env = {
        "FLEETOPS_BROKER_URL": rabbitmq_url,
        "FLEETOPS_DATA_DIR": str(data),
        "FLEETOPS_HISTORY_DATABASE_URL": database,
        "FLEETOPS_HISTORY_QUEUE_NAME": QUEUE,
    }
    ctx = FleetContext(tmp_path, env, any_port=True)
    [spec] = recorder_specs(ctx)
    recorder = processes.start(spec, ctx.env)
    # Its durable queue exists once it is connected: from then on nothing sent is unrouted.
    wait_for(
        lambda: value(scrape(recorder), "fleetops_history_broker_up", app="default") == 1,
        timeout=60,
    )

    # Dated in the past: the checker would date events from the future to now.
    tasks = lifecycles("killed", 1500, start=time.time() - 3600)
    publishing = Publishing(rabbitmq_url, tasks)
    publishing.start()
    # Killed while it holds events it has read but not committed (a batch waits up to the
    # flush interval): acknowledged on reading, as celery's receiver does, these are lost.
    wait_for(
        lambda: held(scrape(recorder)) >= 100,
        timeout=60, interval=0.01, message="the recorder holding uncommitted events",
    )  # fmt: skip
    recorder.kill()

    recorder.start()
    publishing.join(timeout=120)
    assert not publishing.is_alive(), "the publisher did not finish"
    assert publishing.error is None, publishing.error
    expected = expected_states(tasks)
    wait_for(
        lambda: recorder.alive() and all_written(database, expected),
        timeout=120, interval=0.2, message="every task in its final state after the kill",
    )  # fmt: skip

    # Everything committed is acknowledged: nothing is left for the broker to hand back.
    wait_for(
        lambda: value(scrape(recorder), UNACKED, app="default") == 0,
        timeout=30, message="every delivery acknowledged",
    )  # fmt: skip
    recorder.stop()
    assert queued_messages(rabbitmq_url) == 0
