"""A realistic Celery event stream, built in advance, for the exporter benchmarks.

Many workers and task names; tasks succeed, fail with a traceback, or retry and then succeed;
producers send ``task-sent`` one message each; prefork workers' task events travel in
``task.multi`` batches; heartbeats come every two seconds of the stream's clock. Every event
carries a per-sender Lamport clock like Celery's. ``Stream.chunk(n)`` returns Redis PUBLISH
commands carrying about n events, and how many events they carry exactly.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from bench.harness import FleetNames

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/app/.venv/lib/python3.11/site-packages/celery/app/trace.py", line 453,'
    " in trace_task\n"
    "    R = retval = fun(*args, **kwargs)\n"
    '  File "/app/workers/images/tasks.py", line 88, in make_thumbnails\n'
    '    raise ValueError(f"cannot decode image {image_id}")\n'
    "ValueError: cannot decode image 4f1c\n"
)


def envelope(routing_key: str, body: object, hostname: str) -> bytes:
    return orjson.dumps(
        {
            "body": base64.b64encode(orjson.dumps(body)).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {"hostname": hostname},
            "properties": {
                "delivery_mode": 1,
                "delivery_info": {"exchange": "celeryev", "routing_key": routing_key},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )


def publish_command(channel: bytes, payload: bytes) -> bytes:
    return b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
        len(channel), channel, len(payload), payload,
    )  # fmt: skip


@dataclass
class Stream(FleetNames):
    multi_size: int = 8  # task events per task.multi message from a prefork worker
    db: int = 0
    # Event timestamps come from here: a benchmark passes the time each event is due to be
    # published, so the exporter's own lag metric means what it says.
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        super().__post_init__()
        self.events = 0
        self.by_type: Counter[str] = Counter()
        self._pending: dict[str, list] = {}
        self._heartbeat_due = 0.0

    def _event(self, hostname: str, kind: str, **fields: object) -> dict:
        self.events += 1
        self.by_type[kind] += 1
        return {
            "hostname": hostname,
            "utcoffset": 0,
            "pid": 4242,
            "clock": self.next_clock(hostname),
            "timestamp": self.clock(),
            "type": kind,
            **fields,
        }

    def _channel(self, routing_key: str) -> bytes:
        return f"/{self.db}.celeryev/{routing_key}".encode()

    def _task_events(self, worker: str, name: str) -> tuple[str, list[dict]]:
        task_id = str(uuid.uuid4())
        out = [
            self._event(
                worker, "task-received", uuid=task_id, name=name, args="(42,)", kwargs="{}",
                root_id=task_id, parent_id=None, retries=0, eta=None, expires=None,
            ),
            self._event(worker, "task-started", uuid=task_id),
        ]  # fmt: skip
        roll = self.rng.random()
        if roll < 0.9:
            out.append(
                self._event(
                    worker, "task-succeeded", uuid=task_id, result="None",
                    runtime=self.rng.expovariate(5.0),
                )
            )  # fmt: skip
        elif roll < 0.97:
            out.append(
                self._event(
                    worker, "task-failed", uuid=task_id, traceback=TRACEBACK,
                    exception="ValueError('cannot decode image 4f1c')",
                )
            )  # fmt: skip
        else:
            out.append(
                self._event(
                    worker, "task-retried", uuid=task_id, traceback=TRACEBACK,
                    exception="TransientError('storage busy')",
                )
            )  # fmt: skip
            # The retry runs again and succeeds, as retries mostly do: a task that never ends
            # would make any consumer's memory grow for as long as the stream lasts.
            out += [
                self._event(worker, "task-received", uuid=task_id, name=name, retries=1),
                self._event(worker, "task-started", uuid=task_id),
                self._event(worker, "task-succeeded", uuid=task_id, result="None", runtime=0.1),
            ]
        return task_id, out

    def chunk(self, target_events: int) -> tuple[bytes, int]:
        """PUBLISH commands for about ``target_events`` events; (commands, exact events)."""
        commands: list[bytes] = []
        published = self._heartbeats(commands)
        while published < target_events:
            worker = self.rng.choice(self.worker_names)
            published += self._task(commands, worker, self.rng.choice(self.names))
        return b"".join(commands), published

    def cover(self, dedicated: bool = False) -> tuple[bytes, int]:
        """One task for every (worker, task name) pair, so every series the fleet can make
        exists; ``dedicated``: worker i consumes only queue i % queues, as fleets usually do."""
        commands: list[bytes] = []
        published = self._heartbeats(commands, force=True)
        for i, worker in enumerate(self.worker_names):
            for name in self.names:
                if not dedicated or self.queue_of[name] == f"queue-{i % self.queues}":
                    published += self._task(commands, worker, name)
        return b"".join(commands), published

    def _heartbeats(self, commands: list[bytes], force: bool = False) -> int:
        published = 0
        now = self.clock()
        if force or now >= self._heartbeat_due:
            self._heartbeat_due = now + 2.0
            for worker in self.worker_names:
                heartbeat = self._event(
                    worker, "worker-heartbeat", freq=2.0, active=2, processed=self.events,
                    loadavg=[0.5, 0.5, 0.5], sw_ident="py-celery", sw_ver="5.5.0", sw_sys="Linux",
                )  # fmt: skip
                commands.append(
                    publish_command(
                        self._channel("worker.heartbeat"),
                        envelope("worker.heartbeat", heartbeat, worker),
                    )
                )
                published += 1
        return published

    def _task(self, commands: list[bytes], worker: str, name: str) -> int:
        """Publish one task's events (the worker's part may wait for its task.multi batch)."""
        published = 0
        producer = self.rng.choice(self.producer_names)
        task_id, task_events = self._task_events(worker, name)
        sent = self._event(
            producer, "task-sent", uuid=task_id, root_id=task_id, parent_id=None, name=name,
            args="(42,)", kwargs="{}", retries=0, eta=None, expires=None,
            queue=self.queue_of[name], exchange="", routing_key=self.queue_of[name],
        )  # fmt: skip
        # The sent event is published first, as the producer does before the worker acts.
        sent["timestamp"] = task_events[0]["timestamp"] - 0.001
        commands.append(
            publish_command(self._channel("task.sent"), envelope("task.sent", sent, producer))
        )
        published += 1
        pending = self._pending.setdefault(worker, [])
        pending.extend(task_events)
        if len(pending) >= self.multi_size:
            commands.append(
                publish_command(
                    self._channel("task.multi"), envelope("task.multi", pending, worker)
                )
            )
            published += len(pending)
            self._pending[worker] = []
        return published

    def flush(self) -> tuple[bytes, int]:
        """Publish the task events still buffered by the simulated workers."""
        commands = []
        flushed = 0
        for worker, pending in self._pending.items():
            if pending:
                commands.append(
                    publish_command(
                        self._channel("task.multi"), envelope("task.multi", pending, worker)
                    )
                )
                flushed += len(pending)
        self._pending = {}
        return b"".join(commands), flushed
