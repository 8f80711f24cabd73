"""Our exporter and Flower side by side on one real Redis, fed a realistic stream at rising rates.

    uv run --frozen python bench/exporter_throughput.py            # quick: about 1-2 minutes
    uv run --frozen python bench/exporter_throughput.py --seconds 10 --rates 2000,5000,...

Both consumers subscribe to the same Redis before anything is published; the stream
(bench/exporter_stream.py: many workers and task names, successes, failures with tracebacks,
retries, heartbeats, prefork ``task.multi`` batches) is built before each step and written
straight into Redis with PUBLISH at the step's rate. Per rate and per consumer it reports the
events consumed (ours: exactly, from ``fleetops_exporter_events_total``; Flower: task events from
``flower_events_total``, the only events it counts), the loss, how long it needed to catch up
after the last publish, its CPU seconds per event and its peak resident memory. A consumer keeps
up with a rate when it loses nothing and has caught up within ``--max-catch-up`` seconds of the
last publish (a consumer that needs longer falls further behind for as long as the rate lasts);
one that does not is retired, so it does not steal CPU from the other at higher rates.
Then it times ``/metrics`` of a fresh exporter holding 200 workers x 50 task names x 10
queues, and with ``--soak-events`` it follows our exporter's memory over a long stream. Each
consumer is pinned to a core of its own when there are two.

A benchmark, never a test: numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import redis
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.exporter_stream import Stream
from fleetops.fleet.spec import free_port

REPO = Path(__file__).resolve().parent.parent
TICK = 0.01  # publish every 10 ms: smooth enough that a rate is a rate, not bursts
SAMPLE_EVERY = 0.25


# ---- servers and consumers -------------------------------------------------------------------


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


@dataclass
class Consumer:
    name: str
    argv: list[str]
    ready_path: str
    metrics_path: str
    count: Callable[[str], int]
    port: int
    log_path: Path
    core: int | None
    process: subprocess.Popen | None = None
    ps: psutil.Process | None = None
    retired: bool = False
    scrapes: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETOPS_")}
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
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.retired = True


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


def ours_task_events(text: str) -> int:
    return int(
        sum(
            v
            for labels, v in samples(text, "fleetops_exporter_events_total")
            if labels["type"].startswith("task-")
        )
    )


def ours_all_events(text: str) -> int:
    return int(sum(v for _labels, v in samples(text, "fleetops_exporter_events_total")))


def flower_task_events(text: str) -> int:
    return int(sum(v for _labels, v in samples(text, "flower_events_total")))


def own_losses(exporter: Consumer) -> dict[str, int]:
    """What our exporter itself says it lost so far (dropped events, reconnects)."""
    families = (
        "fleetops_exporter_events_dropped_total",
        "fleetops_exporter_broker_reconnects_total",
    )
    query = "&".join(f"name[]={f}" for f in families)
    text = httpx.get(f"{exporter.url}/metrics?{query}", timeout=60).text
    return {
        f"{f.removeprefix('fleetops_exporter_')}{labels or ''}": int(v)
        for f in families
        for labels, v in samples(text, f)
        if v
    }


def ours(redis_url: str, workdir: Path, core: int | None, name: str = "fleetops") -> Consumer:
    port = free_port()
    argv = [
        sys.executable, "-m", "fleetops", "exporter", "--broker-url", redis_url,
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING",
    ]  # fmt: skip
    # Only the event counter, so counting costs little; what it costs is measured and taken
    # out of the CPU per event, for Flower (whose /metrics has no such filter) as for ours.
    counter = "/metrics?name[]=fleetops_exporter_events_total"
    return Consumer(
        name, argv, "/metrics", counter, ours_task_events, port, workdir / f"{name}.log", core
    )


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


def build(stream: Stream, rate: int, seconds: float, start: float) -> Plan:
    per_tick = rate * TICK
    now = [start]
    stream.clock = lambda: now[0]
    before_all, before_task = stream.events, task_events_of(stream)
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
    )


def task_events_of(stream: Stream) -> int:
    return sum(n for kind, n in stream.by_type.items() if kind.startswith("task-"))


# ---- one step --------------------------------------------------------------------------------


@dataclass
class Result:
    consumed: int = 0
    lost: int = 0
    catch_up: float = 0.0
    cpu_per_event: float = 0.0
    peak_rss: int = 0
    extra: str = ""


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
        time.sleep(0.5)
    return max(last, 0), changed


def run_step(
    plan: Plan, publisher: Publisher, consumers: list[Consumer], settle_limit: float
) -> tuple[dict[str, Result], float]:
    active = [c for c in consumers if not c.retired]
    before = {c.name: c.consumed() for c in active}
    cpu = {c.name: c.cpu_seconds() for c in active}
    scrapes = {c.name: c.scrapes for c in active}
    ours_consumer = next((c for c in active if c.name == "fleetops"), None)
    ours_before = ours_all_events(ours_consumer.metrics()) if ours_consumer else 0
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
        expected = plan.task_events
        consumed, changed = settle(c, before[c.name], expected, settle_limit)
        result = Result(consumed=consumed, lost=max(0, expected - consumed))
        result.catch_up = max(0.0, changed - done)
        # The benchmark's own counting scrapes are not event handling: take their cost out.
        used = c.cpu_seconds() - cpu[c.name]
        used -= (c.scrapes - scrapes[c.name]) * c.scrape_cpu()
        if c is ours_consumer:
            # Ours counts every event exactly, heartbeats included: use the whole stream.
            everything = ours_all_events(c.metrics()) - ours_before
            result.extra = f"all events {everything}/{plan.events}"
            said = own_losses(c)
            if said:  # what the exporter itself says about its losses, so far
                result.extra += f"; its own metrics: {said}"
            result.lost = max(result.lost, plan.events - everything)
            result.cpu_per_event = used / max(everything, 1)
        else:
            result.cpu_per_event = used / max(consumed, 1)
        results[c.name] = result
    sampler.stop.set()
    thread.join()
    for c in active:
        results[c.name].peak_rss = sampler.peak.get(c.name, 0)
    return results, achieved


# ---- /metrics with a big fleet ---------------------------------------------------------------


def raw_get(port: int, path: str) -> tuple[float, bytes]:
    """Seconds from request to the last byte, read as fast as a socket allows: a Python HTTP
    client spends longer parsing a multi-megabyte answer than the exporter spends serving it,
    and Prometheus reads it at socket speed."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        parts = []
        while chunk := sock.recv(1 << 20):
            parts.append(chunk)
    return time.perf_counter() - started, b"".join(parts)


def time_scrapes(
    redis_port: int,
    workdir: Path,
    core: int | None,
    workers: int,
    names: int,
    queues: int,
    n: int,
    dedicated: bool,
) -> None:
    url = f"redis://127.0.0.1:{redis_port}/0"
    exporter = ours(url, workdir, core, name="fleetops-scrape")
    exporter.count = ours_all_events
    try:
        exporter.start()
        wait_for(lambda: pattern_subscribers(redis_port) >= 1, 30, "subscription")
        stream = Stream(workers=workers, task_names=names, queues=queues, seed=11)
        data, count = stream.cover(dedicated)
        tail, more = stream.flush()
        publisher = Publisher(redis_port)
        chunk = 1 << 20
        ticks = [(data + tail)[i : i + chunk] for i in range(0, len(data) + len(tail), chunk)]
        publisher.publish(ticks, time.time())
        publisher.close()
        wait_for(lambda: exporter.consumed() >= count + more, 120, "every event consumed")
        timings = [raw_get(exporter.port, "/metrics")[0] for _ in range(n)]
        response = httpx.get(exporter.url + "/metrics", timeout=30)
        text = response.text
        series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        own = samples(text, "fleetops_exporter_scrape_duration_seconds")[0][1]
        topology = (
            f"each worker consumes one queue (runs its {names // queues} task names)"
            if dedicated
            else "every worker runs every task name"
        )
        print(
            f"\n/metrics with {workers} workers x {names} task names x {queues} queues, {topology}:"
            f" {series} samples, {len(response.content) / 1e6:.1f} MB"
        )
        print(
            f"  GET /metrics over {n} scrapes: first {timings[0] * 1000:.0f} ms, "
            f"median {statistics.median(timings) * 1000:.0f} ms, "
            f"max of the rest {max(timings[1:]) * 1000:.0f} ms; "
            f"render alone (exporter's own gauge) {own * 1000:.0f} ms"
        )
    finally:
        exporter.stop()


# ---- memory over a long stream -------------------------------------------------------------


def soak(redis_port: int, workdir: Path, core: int | None, events: int, rate: int) -> None:
    """Our exporter alone, a stream built while it is published (too long to hold in memory),
    its resident memory sampled at every tenth of the events."""
    exporter = ours(f"redis://127.0.0.1:{redis_port}/0", workdir, core, name="fleetops-soak")
    exporter.count = ours_all_events
    try:
        exporter.start()
        wait_for(lambda: pattern_subscribers(redis_port) >= 1, 30, "subscription")
        stream = Stream(workers=50, task_names=50, queues=10, seed=13)
        sock = socket.create_connection(("127.0.0.1", redis_port))
        sock.sendall(b"*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$3\r\nOFF\r\n")
        per_tick = max(1, round(rate * TICK))
        marks = [events * i // 10 for i in range(1, 11)]
        rss: list[tuple[int, int]] = []
        started = time.time()
        published = 0
        while published < events:
            due = started + published / rate
            stream.clock = lambda due=due: due
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            data, count = stream.chunk(per_tick)
            sock.sendall(data)
            published += count
            if published >= marks[len(rss)]:
                rss.append((published, exporter.rss()))
        data, count = stream.flush()
        sock.sendall(data)
        published += count
        elapsed = time.time() - started
        sock.close()
        consumed, _changed = settle(exporter, 0, published, 120)
        rss.append((published, exporter.rss()))
        print(
            f"\nsoak: {published} events in {elapsed:.0f}s ({published / elapsed:.0f}/s), "
            f"consumed {consumed}, lost {published - consumed}; {own_losses(exporter) or ''}"
        )
        print("  RSS (MB) at each tenth: " + " ".join(f"{r / 2**20:.0f}" for _n, r in rss))
        warm = rss[0][1]
        print(f"  growth after the first tenth: {(max(r for _n, r in rss) - warm) / warm:+.1%}")
    finally:
        exporter.stop()


def ladder(args: argparse.Namespace, rates: list[int], port: int, workdir: Path, pin: bool) -> None:
    """Our exporter and Flower side by side, one step per rate."""
    cores = sorted(os.sched_getaffinity(0))
    url = f"redis://127.0.0.1:{port}/0"
    consumers = [ours(url, workdir, cores[0] if pin else None)]
    if not args.no_flower:
        consumers.append(flower(url, workdir, cores[1] if pin else None))
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
        stream = Stream(workers=args.workers, task_names=args.task_names)
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
        if best.get("flower") and best.get("fleetops"):
            print(f"ratio fleetops/flower: {best['fleetops'] / best['flower']:.1f}x")
        # A second ratio that does not depend on where the ladder has its steps: the events
        # one core could apply, from each consumer's lowest CPU per event (its busiest step,
        # where fixed costs weigh least).
        capacity = {n: 1 / c for n, c in lowest_cpu.items() if c > 0}
        for name, events in capacity.items():
            print(f"one-core capacity from its lowest CPU per event, {name}: {events:.0f}/s")
        if capacity.get("flower") and capacity.get("fleetops"):
            print(f"ratio fleetops/flower: {capacity['fleetops'] / capacity['flower']:.1f}x")
    finally:
        if publisher is not None:
            publisher.close()
        for c in consumers:
            c.stop()


# ---- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="2000,5000,10000,20000,50000,100000", help="events/s")
    parser.add_argument("--seconds", type=float, default=3.0, help="publishing time per rate")
    parser.add_argument("--settle", type=float, default=20.0, help="max wait to catch up")
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--task-names", type=int, default=50)
    parser.add_argument("--no-flower", action="store_true", help="only our exporter")
    parser.add_argument(
        "--max-catch-up",
        type=float,
        default=2.0,
        help="seconds after the last publish within which a consumer must have counted"
        " everything to keep up; more means its backlog grows without bound under that rate",
    )
    parser.add_argument("--keep-going", action="store_true", help="never retire a consumer")
    parser.add_argument("--no-pin", action="store_true", help="do not pin consumers to cores")
    parser.add_argument("--scrapes", type=int, default=20, help="0 skips the /metrics timing")
    parser.add_argument(
        "--soak-events", type=int, default=0, help="also publish this many events (e.g. 10000000)"
    )
    parser.add_argument("--soak-rate", type=int, default=20_000, help="events/s of the soak")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]

    cores = sorted(os.sched_getaffinity(0))
    pin = not args.no_pin and len(cores) >= 2
    load = os.getloadavg()[0]
    print(
        f"{len(cores)} cores, load average {load:.1f} before the run; consumers "
        + ("pinned to one core each" if pin else "not pinned")
    )
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-exporter-") as tmp:
        workdir = Path(tmp)
        redis_process, port = start_redis(workdir)
        try:
            ladder(args, rates, port, workdir, pin)
            if args.scrapes:
                core = cores[0] if pin else None
                for dedicated in (True, False):
                    time_scrapes(port, workdir, core, 200, 50, 10, args.scrapes, dedicated)
            if args.soak_events:
                soak(port, workdir, cores[0] if pin else None, args.soak_events, args.soak_rate)
        finally:
            redis_process.terminate()
            redis_process.wait(timeout=10)
    print(f"\nthe run took {time.time() - started:.0f}s")


if __name__ == "__main__":
    main()
