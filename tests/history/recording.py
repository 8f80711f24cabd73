"""Run a recorder in a thread of the test process and publish events through a real broker."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from celery import Celery
from sqlalchemy import Engine, func, inspect, select

from exporters.history.database import create_history_engine
from exporters.history.fleet import processes as recorder_specs
from exporters.history.recorder import Recorder
from exporters.history.schema import tasks, workers
from exporters.history.settings import HistorySettings
from fleetops.fleet.spec import FleetContext
from tests.exporter.process import Samples, parse, total
from tests.helpers import wait_for
from tests.processes import Child, Processes


class Publisher:
    """Sends events the way workers do: Celery's event dispatcher over the broker."""

    def __init__(self, broker_url: str) -> None:
        self.app = Celery("history-test", broker=broker_url, set_as_current=False)
        self.connection = self.app.connection_for_write()
        self.dispatcher = self.app.events.Dispatcher(self.connection, enabled=True)

    def send(self, event: dict[str, Any]) -> None:
        fields = dict(event)
        kind = fields.pop("type")
        # The dispatcher stamps its own hostname; a worker's events carry the worker's.
        self.dispatcher.hostname = fields.pop("hostname", "test@127.0.0.1")
        self.dispatcher.pid = fields.pop("pid", self.dispatcher.pid)
        self.dispatcher.send(kind, **fields)

    def send_all(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self.send(event)

    def close(self) -> None:
        self.dispatcher.close()
        self.connection.close()


def history_settings(
    broker_url: str, database_url: str, data_dir: Path, **extra: Any
) -> HistorySettings:
    values: dict[str, Any] = {
        "broker_url": broker_url,
        "history_database_url": database_url,
        "data_dir": data_dir,
        "history_metrics_port": 0,
        "history_flush_interval": 0.1,
        "history_retry_initial_seconds": 0.1,
        "history_retry_max_seconds": 0.5,
    }
    values.update(extra)
    return HistorySettings(**values)


@contextlib.contextmanager
def running_recorder(
    settings: HistorySettings, publisher: Publisher, engine: Engine | None = None
) -> Iterator[Recorder]:
    recorder = Recorder(settings, engine=engine, drain_timeout=3.0)
    thread = threading.Thread(target=recorder.run, daemon=True)
    thread.start()
    try:
        wait_for_subscription(recorder, publisher)
        yield recorder
    finally:
        recorder.stop()
        thread.join(timeout=60)
        assert not thread.is_alive(), "the recorder did not stop"


def wait_for_subscription(recorder: Recorder, publisher: Publisher) -> None:
    """Redis pub/sub delivers only to subscribers: publish a marker until one arrives."""
    marker = f"probe-{uuid.uuid4().hex[:6]}@test"
    seen = recorder.metrics.events.labels("worker-heartbeat", recorder.sources[0].name)

    def arrived() -> bool:
        before = seen._value.get()
        publisher.send({"type": "worker-heartbeat", "hostname": marker})
        return wait_quietly(lambda: seen._value.get() > before, 0.5)

    wait_for(arrived, timeout=60, interval=0.1, message="recorder subscribed to events")


def wait_quietly(predicate: Any, timeout: float) -> bool:
    try:
        wait_for(predicate, timeout=timeout, interval=0.02)
    except TimeoutError:
        return False
    return True


def task_states(database_url: str) -> dict[str, str]:
    engine = create_history_engine(database_url)
    try:
        with engine.connect() as connection:
            # The recorder creates its tables as it starts: no table yet is no task yet (and
            # not an error for wait_for to retry, which PostgreSQL would raise).
            if not inspect(connection).has_table(tasks.name):
                return {}
            return dict(connection.execute(select(tasks.c.task_id, tasks.c.state)).all())
    finally:
        engine.dispose()


def worker_count(database_url: str) -> int:
    engine = create_history_engine(database_url)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table(workers.name):
                return 0
            return connection.execute(select(func.count()).select_from(workers)).scalar_one()
    finally:
        engine.dispose()


def metric(recorder: Recorder, name: str, **labels: str) -> float:
    """The sum of the recorder's samples of ``name`` whose labels include ``labels`` (every
    app's, unless ``app=`` is given); 0 for a label value not counted yet, but an error for a
    name the recorder does not have, so that ``metric(...) == 0`` can fail."""
    wanted = labels.items()
    found, known = 0.0, False
    for family in recorder.metrics.registry.collect():
        if name not in (family.name, family.name + "_total"):
            continue
        known = True
        for sample in family.samples:
            if sample.name == name and wanted <= sample.labels.items():
                found += sample.value
    assert known, f"no metric {name}"
    return found


@dataclass
class RecorderProcess:
    child: Child
    url: str

    def metrics(self) -> Samples:
        response = httpx.get(self.url, timeout=10)
        response.raise_for_status()
        return parse(response.text)

    def healthz(self) -> int:
        return httpx.get(self.url.replace("/metrics", "/healthz"), timeout=10).status_code

    def written(self) -> float:
        return total(self.metrics(), "fleetops_history_events_written_total")

    def commits(self, count: int) -> None:
        """Wait for ``count`` more commits: the writer is one thread, so the last of them holds
        only events taken after the first was committed, that is after this call."""
        for _ in range(count):
            before = self.written()
            wait_for(lambda b=before: self.child.alive() and self.written() > b, timeout=60,
                     message=f"{self.child.label} committing")  # fmt: skip

    def drained(self) -> bool:
        self.child.alive()
        return total(self.metrics(), "fleetops_history_buffered_events") == 0


def start_recorder(
    processes: Processes,
    name: str,
    broker_url: str,
    database_url: str,
    wait: bool,
    env: dict[str, str] | None = None,
) -> RecorderProcess:
    """A recorder process as the fleet starts it (the fleet runner's spec), with a data
    directory (and so a spool) of its own; ``env`` adds or overrides FLEETOPS_ settings."""
    data = processes.run_dir / name
    settings = {
        "FLEETOPS_BROKER_URL": broker_url,
        "FLEETOPS_DATA_DIR": str(data),
        "FLEETOPS_HISTORY_DATABASE_URL": database_url,
        "FLEETOPS_HISTORY_FLUSH_INTERVAL": "0.2",
        **(env or {}),
    }
    ctx = FleetContext(run_dir=processes.run_dir, env=settings, any_port=True)
    (spec,) = recorder_specs(ctx)
    spec = dataclasses.replace(spec, name=name)
    child = processes.start(spec, ctx.env, wait=wait)
    assert spec.url is not None
    return RecorderProcess(child, spec.url)


__all__ = [
    "Publisher",
    "RecorderProcess",
    "history_settings",
    "metric",
    "running_recorder",
    "start_recorder",
    "task_states",
]
