"""How fast `fleetops recorder` empties its durable RabbitMQ queue, acknowledging every
delivery only once it is committed: a backlog is published while the recorder is stopped, then
the recorder is started and timed until it has written every event.

    uv run --frozen python bench/recorder_rabbitmq.py                     # 300k events, SQLite
    uv run --frozen python bench/recorder_rabbitmq.py --multi 8           # prefork task.multi
    uv run --frozen python bench/recorder_rabbitmq.py --prefetch 10000
    uv run --frozen python bench/recorder_rabbitmq.py --database postgresql://...
    git archive <commit> | tar -x -C /tmp/before && \\
        uv run --frozen python bench/recorder_rabbitmq.py --source /tmp/before   # another checkout

The stream is bench/exporter_stream.py's tasks (sent, received, started, succeeded / failed
with a traceback / retried), as AMQP messages on the ``celeryev`` exchange: one event a
message by default, as solo and thread-pool workers send them (the case where prefetch, which
counts messages, matters most), or ``--multi N`` worker events a ``task.multi`` message. The
rate is taken from the recorder's first write to its last, with its own
``fleetops_history_events_written_total``; "held" is the highest
``fleetops_history_unacknowledged_messages`` seen meanwhile.

A benchmark, never a test: numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import amqp
import httpx
import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.exporter_stream import Stream
from bench.harness import samples, wait_for
from fleetops.fleet.spec import free_port

REPO = Path(__file__).resolve().parent.parent
WRITTEN = "fleetops_history_events_written_total"
UNACKED = "fleetops_history_unacknowledged_messages"
DROPPED = "fleetops_history_events_dropped_total"


def messages(count: int, multi: int) -> list[tuple[str, bytes]]:
    """(routing key, body) of about ``count`` events, oldest first."""
    stream = Stream(clock=lambda: time.time() - 60)
    out: list[tuple[str, bytes]] = []
    pending: list[dict] = []
    events = 0
    while events < count:
        worker, name = stream.rng.choice(stream.worker_names), stream.rng.choice(stream.names)
        task_id, task_events = stream._task_events(worker, name)
        sent = {
            "type": "task-sent", "hostname": stream.rng.choice(stream.producer_names),
            "uuid": task_id, "root_id": task_id, "name": name, "args": "(42,)", "kwargs": "{}",
            "retries": 0, "queue": stream.queue_of[name], "routing_key": stream.queue_of[name],
            "timestamp": task_events[0]["timestamp"] - 0.001, "utcoffset": 0, "pid": 7,
        }  # fmt: skip
        out.append(("task.sent", orjson.dumps(sent)))
        events += 1 + len(task_events)
        if multi <= 1:
            out += [(e["type"].replace("-", "."), orjson.dumps(e)) for e in task_events]
            continue
        pending += task_events
        if len(pending) >= multi:
            out.append(("task.multi", orjson.dumps(pending)))
            pending = []
    if pending:
        out.append(("task.multi", orjson.dumps(pending)))
    return out


def event_count(batch: list[tuple[str, bytes]]) -> int:
    return sum(len(orjson.loads(body)) if key == "task.multi" else 1 for key, body in batch)


class Recorder:
    def __init__(self, args: argparse.Namespace, workdir: Path, queue: str) -> None:
        self.port = free_port()
        self.log = workdir / "recorder.log"
        database = args.database or f"sqlite:///{workdir / 'history.db'}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETOPS_")}
        self.env.update(
            FLEETOPS_BROKER_URL=args.broker,
            FLEETOPS_DATA_DIR=str(workdir / "data"),
            FLEETOPS_HISTORY_DATABASE_URL=database,
            FLEETOPS_HISTORY_QUEUE_NAME=queue,
            FLEETOPS_HISTORY_METRICS_PORT=str(self.port),
        )
        if args.prefetch:
            self.env["FLEETOPS_HISTORY_PREFETCH"] = str(args.prefetch)
        self.cwd = args.source or REPO
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        # ``-c`` puts the working directory first on the path: --source runs that checkout.
        argv = [sys.executable, "-c", "from fleetops.cli import main; main()", "recorder",
                "--log-level", "WARNING"]  # fmt: skip
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                argv, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_for(lambda: self.sample("fleetops_history_broker_up") == 1, 60, "recorder connected")

    def sample(self, name: str) -> float:
        assert self.process is not None
        if self.process.poll() is not None:
            raise SystemExit(f"the recorder exited:\n{self.log.read_text()[-3000:]}")
        try:
            text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=10).text
        except httpx.HTTPError:
            return -1
        return sum(value for _labels, value in samples(text, name))

    def cpu_seconds(self) -> float:
        assert self.process is not None
        times = psutil.Process(self.process.pid).cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=120)


def connect(broker: str) -> amqp.Connection:
    """py-amqp straight, to publish faster than the recorder can read."""
    url = broker.split("://", 1)[1]
    credentials, rest = url.rsplit("@", 1)
    user, password = credentials.split(":", 1)
    host, _, vhost = rest.partition("/")
    return amqp.Connection(host, userid=user, password=password, virtual_host=vhost or "/")


def publish(broker: str, batch: list[tuple[str, bytes]]) -> float:
    """Publish as Celery's dispatcher does (transient JSON messages); the rate it took."""
    started = time.monotonic()
    with connect(broker) as conn:
        channel = conn.channel()
        for key, body in batch:
            message = amqp.Message(
                body, content_type="application/json", content_encoding="utf-8", delivery_mode=1
            )
            channel.basic_publish(message, exchange="celeryev", routing_key=key)
    return len(batch) / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--multi", type=int, default=1, help="worker events a message")
    parser.add_argument("--prefetch", type=int, help="FLEETOPS_HISTORY_PREFETCH")
    parser.add_argument("--database", help="history database URL (default: SQLite in a tmp dir)")
    parser.add_argument("--broker", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--source", type=Path, help="run the recorder of this checkout")
    args = parser.parse_args()

    batch = messages(args.events, args.multi)
    events = event_count(batch)
    queue = f"fleetops.bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="recorder-rabbitmq-") as tmp:
        recorder = Recorder(args, Path(tmp), queue)
        try:
            recorder.start()  # declares the durable queue
            recorder.stop()
            rate = publish(args.broker, batch)
            print(f"published {len(batch):,} messages ({events:,} events) at {rate:,.0f} msg/s")
            recorder.start()
            cpu_before = recorder.cpu_seconds()
            first: tuple[float, float] | None = None
            held = 0.0
            last_progress, last_written = time.monotonic(), 0.0
            while True:
                written = recorder.sample(WRITTEN)
                now = time.monotonic()
                held = max(held, recorder.sample(UNACKED))
                if written > 0 and first is None:
                    first = (now, written)
                if written > last_written:
                    last_progress, last_written = now, written
                if written >= events or now - last_progress > 30:
                    break
                time.sleep(0.1)
            cpu = recorder.cpu_seconds() - cpu_before
            dropped = recorder.sample(DROPPED)
        finally:
            recorder.stop()
            with connect(args.broker) as conn:
                conn.channel().queue_delete(queue)
        assert first is not None, "nothing written"
        drain = (last_written - first[1]) / max(last_progress - first[0], 1e-9)
        print(
            f"written {last_written:,.0f} of {events:,} events; {drain:,.0f} events/s from the"
            f" first write to the last; {cpu / max(last_written, 1) * 1e6:.0f} µs recorder CPU"
            f" an event; at most {held:,.0f} messages held unacknowledged; dropped {dropped:,.0f}"
        )


if __name__ == "__main__":
    main()
