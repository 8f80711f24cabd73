"""What the whole-process benchmarks share: a simulated fleet's names, a real Redis, consumer
processes watched from outside, a paced publisher and the ladder of rates that compares them.

bench/exporter_throughput.py (our exporter against Flower) and bench/recorder_throughput.py
(the history recorder against Flower) drive their consumers through :func:`run_ladder`; the
event builders (bench/exporter_stream.py, bench/history.py) simulate the same fleet through
:class:`FleetNames`. A consumer that counts differently subclasses :class:`Consumer` and
overrides its step hooks.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import psutil
import redis
from prometheus_client.parser import text_string_to_metric_families

from fleetops.fleet.spec import free_port

if TYPE_CHECKING:  # only for annotations: bench.exporter_stream imports this module
    from bench.exporter_stream import Stream

REPO = Path(__file__).resolve().parent.parent
TICK = 0.01  # publish every 10 ms: smooth enough that a rate is a rate, not bursts
SAMPLE_EVERY = 0.25


# ---- the simulated fleet ---------------------------------------------------------------------


@dataclass
class FleetNames:
    """Who sends events in a simulated fleet, and their Lamport clocks (one per sender, as
    Celery keeps them)."""

    seed: int = 7
    workers: int = 50
    task_names: int = 50
    queues: int = 10
    producers: int = 20

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.worker_names = [f"celery@worker-{i:03d}" for i in range(self.workers)]
        self.producer_names = [f"gen{1000 + i}@web-{i % 5}" for i in range(self.producers)]
        self.names = [f"app.tasks.task_{i:02d}" for i in range(self.task_names)]
        self.queue_of = {n: f"queue-{i % self.queues}" for i, n in enumerate(self.names)}
        self.clocks: dict[str, int] = {}

    def next_clock(self, hostname: str) -> int:
        clock = self.clocks.get(hostname, 0) + 1
        self.clocks[hostname] = clock
        return clock


# ---- servers ---------------------------------------------------------------------------------


def pattern_subscribers(port: int) -> int:
    """Clients holding a pattern subscription (PUBSUB NUMPAT counts distinct patterns only)."""
    return sum(1 for client in redis.Redis(port=port).client_list() if int(client["psub"]))


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception as exc:  # the server may not answer until it is up
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what} ({last!r})")


def start_redis(directory: Path) -> tuple[subprocess.Popen, int]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    port = free_port()
    # Redis's default pub/sub output buffer limit (32 MB hard, 8 MB for 60 s) is kept on
    # purpose: it is what disconnects a slow consumer in production.
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for(lambda: redis.Redis(port=port).ping(), 20, "redis-server")
    return process, port


@contextlib.contextmanager
def redis_run(prefix: str) -> Iterator[tuple[Path, int]]:
    """A whole benchmark run: a temporary directory and a Redis in it, (directory, port);
    says how long the run took at the end."""
    started = time.time()
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        workdir = Path(tmp)
        process, port = start_redis(workdir)
        try:
            yield workdir, port
        finally:
            process.terminate()
            process.wait(timeout=10)
    print(f"\nthe run took {time.time() - started:.0f}s")


def samples(text: str, metric: str) -> list[tuple[dict[str, str], float]]:
    """The samples of one metric; a line scan, since a full parse of a large answer takes
    the benchmark longer than the exporters need to render it."""
    wanted = (metric + "{", metric + " ")
    lines = "\n".join(line for line in text.splitlines() if line.startswith(wanted))
    return [
        (s.labels, s.value)
        for family in text_string_to_metric_families(lines)
        for s in family.samples
        if s.name == metric
    ]


# ---- consumers -------------------------------------------------------------------------------


@dataclass
class Result:
    consumed: int
    lost: int
    catch_up: float = 0.0
    cpu_per_event: float = 0.0
    peak_rss: int = 0
    extra: str = ""


@dataclass
class Consumer:
    """A consumer process watched from outside: its CPU and memory through psutil, what it
    consumed through its own /metrics. Subclasses that count differently override the step
    hooks (``expected``, ``begin_step``, ``finish_step``)."""

    name: str
    argv: list[str]
    ready_path: str
    metrics_path: str
    count: Callable[[str], int]
    port: int
    log_path: Path
    core: int | None
    env: dict[str, str] = field(default_factory=dict)
    # Seconds between two counts while it catches up: the resolution of the catch-up time.
    poll: float = 0.5
    # How long a stop may take before it is killed (a profiled process writes its profile).
    stop_timeout: float = 20.0
    process: subprocess.Popen | None = None
    ps: psutil.Process | None = None
    retired: bool = False
    scrapes: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        # The caller's FLEETOPS_* settings must not leak into a benchmark's consumers.
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETOPS_")}
        env.update(self.env)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self.ps = psutil.Process(self.process.pid)
        if self.core is not None:
            self.ps.cpu_affinity([self.core])
        wait_for(self._ready, 60, f"{self.name} serving HTTP")

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise SystemExit(f"{self.name} exited:\n{self.log_path.read_text()[-3000:]}")
        return httpx.get(self.url + self.ready_path, timeout=5).status_code == 200

    def metrics(self, timeout: float = 60) -> str:
        self.scrapes += 1
        return httpx.get(self.url + self.metrics_path, timeout=timeout).text

    def scrape_cpu(self) -> float:
        """CPU seconds one counting scrape costs the consumer, measured while it is idle."""
        before = self.cpu_seconds()
        self.metrics()
        return self.cpu_seconds() - before

    def consumed(self) -> int:
        return self.count(self.metrics())

    def cpu_seconds(self) -> float:
        assert self.ps is not None
        times = self.ps.cpu_times()
        return times.user + times.system

    def rss(self) -> int:
        assert self.ps is not None
        return self.ps.memory_info().rss

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.retired = True

    # -- step hooks ------------------------------------------------------------------------
    def expected(self, plan: Plan) -> int:
        """What the consumer should count of the step's events: task events by default,
        the only events Flower counts."""
        return plan.task_events

    def begin_step(self) -> None:
        """Called before the step's first publish, after its counters are read."""

    def finish_step(self, plan: Plan, result: Result, used_cpu: float) -> None:
        """Called once it caught up; ``used_cpu`` is its CPU without the counting scrapes."""
        result.cpu_per_event = used_cpu / max(result.consumed, 1)


def flower_task_events(text: str) -> int:
    return int(sum(v for _labels, v in samples(text, "flower_events_total")))


def flower(redis_url: str, workdir: Path, core: int | None) -> Consumer:
    port = free_port()
    argv = [
        sys.executable, "-m", "celery", f"--broker={redis_url}", "flower",
        f"--port={port}", "--address=127.0.0.1", "--logging=warning",
    ]  # fmt: skip
    return Consumer(
        "flower", argv, "/healthcheck", "/metrics", flower_task_events, port,
        workdir / "flower.log", core,
    )  # fmt: skip


# ---- publishing ------------------------------------------------------------------------------


class Publisher:
    """Writes pre-built PUBLISH commands on one connection, replies switched off."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def publish(self, ticks: list[bytes], start: float) -> float:
        """Send tick i at ``start + i * TICK``; returns when the last one was sent."""
        self.sock.sendall(b"*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$3\r\nOFF\r\n")
        for i, data in enumerate(ticks):
            delay = start + i * TICK - time.time()
            if delay > 0:
                time.sleep(delay)
            self.sock.sendall(data)
        # Back on, then a PING: once PONG is read, Redis has fanned out every message.
        self.sock.sendall(b"*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$2\r\nON\r\n*1\r\n$4\r\nPING\r\n")
        answer = b""
        while b"+PONG\r\n" not in answer:
            answer += self.sock.recv(4096)
        return time.time()

    def close(self) -> None:
        self.sock.close()


@dataclass
class Plan:
    rate: int
    ticks: list[bytes]
    events: int
    task_events: int
    start: float  # wall time the first tick is due; event timestamps follow the schedule
    bytes: int
    by_type: dict[str, int] = field(default_factory=dict)  # the step's events by type


def build(stream: Stream, rate: int, seconds: float, start: float) -> Plan:
    per_tick = rate * TICK
    now = [start]
    stream.clock = lambda: now[0]
    before_all, before_task = stream.events, task_events_of(stream)
    before_types = dict(stream.by_type)
    ticks = []
    due = 0.0
    made = 0
    for i in range(round(seconds / TICK)):
        now[0] = start + i * TICK
        due += per_tick
        data, count = stream.chunk(max(1, round(due - made)))
        made += count
        ticks.append(data)
    data, _count = stream.flush()
    ticks[-1] += data
    return Plan(
        rate=rate,
        ticks=ticks,
        events=stream.events - before_all,
        task_events=task_events_of(stream) - before_task,
        start=start,
        bytes=sum(map(len, ticks)),
        by_type={k: n - before_types.get(k, 0) for k, n in stream.by_type.items()},
    )


def task_events_of(stream: Stream) -> int:
    return sum(n for kind, n in stream.by_type.items() if kind.startswith("task-"))


# ---- one step --------------------------------------------------------------------------------


@dataclass
class Sampler:
    """Peak RSS of every consumer while a step runs, from outside: scraping /metrics during a
    step would make the consumers render instead of consume."""

    consumers: list[Consumer]
    peak: dict[str, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.wait(SAMPLE_EVERY):
            for c in self.consumers:
                with contextlib.suppress(psutil.Error):
                    self.peak[c.name] = max(self.peak.get(c.name, 0), c.rss())


def settle(consumer: Consumer, before: int, expected: int, limit: float) -> tuple[int, float]:
    """Wait until the consumer counted everything or stopped counting; (consumed, last change)."""
    deadline = time.time() + limit
    last, changed = -1, time.time()
    while time.time() < deadline:
        try:
            now = consumer.consumed() - before
        except httpx.HTTPError:
            time.sleep(SAMPLE_EVERY)
            continue
        if now != last:
            last, changed = now, time.time()
        if now >= expected or time.time() - changed > 3.0:
            break
        time.sleep(consumer.poll)
    return max(last, 0), changed


def run_step(
    plan: Plan, publisher: Publisher, consumers: list[Consumer], settle_limit: float
) -> tuple[dict[str, Result], float]:
    active = [c for c in consumers if not c.retired]
    before = {c.name: c.consumed() for c in active}
    cpu = {c.name: c.cpu_seconds() for c in active}
    scrapes = {c.name: c.scrapes for c in active}
    for c in active:
        c.begin_step()
    sampler = Sampler(active)
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    wait = plan.start - time.time()
    if wait > 0:
        time.sleep(wait)
    first = time.time()
    done = publisher.publish(plan.ticks, max(first, plan.start))
    achieved = plan.events / max(done - first, 1e-9)
    results: dict[str, Result] = {}
    for c in active:
        expected = c.expected(plan)
        consumed, changed = settle(c, before[c.name], expected, settle_limit)
        result = Result(consumed=consumed, lost=max(0, expected - consumed))
        result.catch_up = max(0.0, changed - done)
        # The benchmark's own counting scrapes are not event handling: take their cost out.
        used = c.cpu_seconds() - cpu[c.name]
        used -= (c.scrapes - scrapes[c.name]) * c.scrape_cpu()
        c.finish_step(plan, result, used)
        results[c.name] = result
    sampler.stop.set()
    thread.join()
    for c in active:
        results[c.name].peak_rss = sampler.peak.get(c.name, 0)
    return results, achieved


# ---- the ladder ------------------------------------------------------------------------------


def add_ladder_options(parser: argparse.ArgumentParser, rates: str, seconds: float) -> None:
    """The options every ladder takes, with the benchmark's own default rates and seconds."""
    parser.add_argument("--rates", default=rates, help="events/s")
    parser.add_argument("--seconds", type=float, default=seconds, help="publishing time per rate")
    parser.add_argument("--settle", type=float, default=20.0, help="max wait to catch up")
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--task-names", type=int, default=50)
    parser.add_argument("--no-flower", action="store_true", help="only ours, no Flower")
    parser.add_argument(
        "--max-catch-up",
        type=float,
        default=2.0,
        help="seconds after the last publish within which a consumer must have counted"
        " everything to keep up; more means its backlog grows without bound under that rate",
    )
    parser.add_argument("--keep-going", action="store_true", help="never retire a consumer")
    parser.add_argument("--no-pin", action="store_true", help="do not pin consumers to cores")


def run_ladder(
    args: argparse.Namespace,
    rates: list[int],
    port: int,
    consumers: list[Consumer],
    stream: Stream,
    ours: str,
    warm_up: int = 0,
) -> None:
    """Start the consumers, then one step per rate; a consumer that falls behind is retired,
    so it does not steal CPU from the other at higher rates. Ends with the highest rate each
    kept up with and ``ours`` against Flower. ``warm_up`` events are published first and not
    reported: what a consumer does once (a schema migration, say) is no step's cost."""
    publisher = None
    try:
        for c in consumers:
            c.start()
        # Subscribed, not just serving HTTP: each reader holds one pattern subscription.
        wait_for(
            lambda: pattern_subscribers(port) >= len(consumers),
            60,
            "every consumer subscribed",
        )
        publisher = Publisher(port)
        if warm_up:
            run_step(build(stream, warm_up, 1.0, time.time() + 0.2), publisher, consumers, 60)
        best: dict[str, int] = {}
        lowest_cpu: dict[str, float] = {}
        header = (
            f"{'rate/s':>7} {'sent/s':>7} {'consumer':<9} {'consumed':>9} {'lost':>8} "
            f"{'catch-up':>8} {'us CPU/ev':>9} {'peak RSS':>9}"
        )
        print(header)
        for rate in rates:
            build_started = time.time()
            estimate = rate * args.seconds / 40_000  # building runs at ~50k events/s
            plan = build(stream, rate, args.seconds, build_started + estimate + 0.5)
            results, achieved = run_step(plan, publisher, consumers, args.settle)
            for name, r in results.items():
                print(
                    f"{rate:>7} {achieved:>7.0f} {name:<9} {r.consumed:>9} {r.lost:>8} "
                    f"{r.catch_up:>7.2f}s {r.cpu_per_event * 1e6:>9.1f} "
                    f"{r.peak_rss / 2**20:>7.0f}MB  {r.extra}"
                )
                if r.cpu_per_event > 0:
                    lowest_cpu[name] = min(lowest_cpu.get(name, 1.0), r.cpu_per_event)
                kept_up = r.lost == 0 and r.catch_up <= args.max_catch_up
                if kept_up and rate > best.get(name, 0):
                    best[name] = rate
                if not kept_up and not args.keep_going:
                    consumer = next(c for c in consumers if c.name == name)
                    consumer.stop()
                    why = f"lost {r.lost}" if r.lost else f"{r.catch_up:.1f}s behind"
                    print(f"{'':>16}{name} {why} at {rate}/s: retired")
            if all(c.retired for c in consumers):
                break
        print()
        for name in [c.name for c in consumers]:
            print(
                f"highest rate kept up with (zero loss, caught up within "
                f"{args.max_catch_up:g}s), {name}: {best.get(name, 0)} events/s"
            )
        if best.get("flower") and best.get(ours):
            print(f"ratio {ours}/flower: {best[ours] / best['flower']:.1f}x")
        # A second ratio that does not depend on where the ladder has its steps: the events
        # one core could apply, from each consumer's lowest CPU per event (its busiest step,
        # where fixed costs weigh least).
        capacity = {n: 1 / c for n, c in lowest_cpu.items() if c > 0}
        for name, events in capacity.items():
            print(f"one-core capacity from its lowest CPU per event, {name}: {events:.0f}/s")
        if capacity.get("flower") and capacity.get(ours):
            print(f"ratio {ours}/flower: {capacity[ours] / capacity['flower']:.1f}x")
    finally:
        if publisher is not None:
            publisher.close()
        for c in consumers:
            c.stop()


def cores_and_pinning(no_pin: bool, what: str) -> tuple[list[int], bool]:
    """The cores this process may use and whether each consumer gets one; says so first."""
    cores = sorted(os.sched_getaffinity(0))
    pin = not no_pin and len(cores) >= 2
    print(
        f"{len(cores)} cores, load average {os.getloadavg()[0]:.1f} before the run; {what} "
        + ("pinned to one core each" if pin else "not pinned")
    )
    return cores, pin
