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
import os
import socket
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.exporter_stream import Stream
from bench.harness import (
    TICK,
    Consumer,
    Plan,
    Publisher,
    Result,
    add_ladder_options,
    cores_and_pinning,
    flower,
    pattern_subscribers,
    redis_run,
    run_ladder,
    samples,
    settle,
    wait_for,
)
from fleetops.fleet.spec import free_port

# ---- our exporter ----------------------------------------------------------------------------


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


@dataclass
class Exporter(Consumer):
    """Ours counts every event exactly, heartbeats included: its loss and CPU per event are
    taken over the whole stream, not only the task events Flower counts."""

    all_before: int = 0

    def begin_step(self) -> None:
        self.all_before = ours_all_events(self.metrics())

    def finish_step(self, plan: Plan, result: Result, used_cpu: float) -> None:
        everything = ours_all_events(self.metrics()) - self.all_before
        result.extra = f"all events {everything}/{plan.events}"
        said = own_losses(self)
        if said:  # what the exporter itself says about its losses, so far
            result.extra += f"; its own metrics: {said}"
        result.lost = max(result.lost, plan.events - everything)
        result.cpu_per_event = used_cpu / max(everything, 1)


def ours(redis_url: str, workdir: Path, core: int | None, name: str = "fleetops") -> Exporter:
    port = free_port()
    argv = [
        sys.executable, "-m", "fleetops", "exporter", "--broker-url", redis_url,
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING",
    ]  # fmt: skip
    # Only the event counter, so counting costs little; what it costs is measured and taken
    # out of the CPU per event, for Flower (whose /metrics has no such filter) as for ours.
    counter = "/metrics?name[]=fleetops_exporter_events_total"
    return Exporter(
        name, argv, "/metrics", counter, ours_task_events, port, workdir / f"{name}.log", core
    )


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
    consumers: list[Consumer] = [ours(url, workdir, cores[0] if pin else None)]
    if not args.no_flower:
        consumers.append(flower(url, workdir, cores[1] if pin else None))
    stream = Stream(workers=args.workers, task_names=args.task_names)
    run_ladder(args, rates, port, consumers, stream, ours="fleetops")


# ---- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_ladder_options(parser, rates="2000,5000,10000,20000,50000,100000", seconds=3.0)
    parser.add_argument("--scrapes", type=int, default=20, help="0 skips the /metrics timing")
    parser.add_argument(
        "--soak-events", type=int, default=0, help="also publish this many events (e.g. 10000000)"
    )
    parser.add_argument("--soak-rate", type=int, default=20_000, help="events/s of the soak")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]

    cores, pin = cores_and_pinning(args.no_pin, "consumers")
    with redis_run("bench-exporter-") as (workdir, port):
        ladder(args, rates, port, workdir, pin)
        if args.scrapes:
            core = cores[0] if pin else None
            for dedicated in (True, False):
                time_scrapes(port, workdir, core, 200, 50, 10, args.scrapes, dedicated)
        if args.soak_events:
            soak(port, workdir, cores[0] if pin else None, args.soak_events, args.soak_rate)


if __name__ == "__main__":
    main()
