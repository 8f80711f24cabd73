"""CPU per event of each stage of the exporter's hot path, on the benchmark's realistic stream.

    uv run --frozen python bench/exporter_stages.py [--events 300000] [--repeat 5]
        [--worker-groups 'celery@(worker)-[0-9]+']

The stages are the ones the applier thread runs for every message (exporters/stream/consumer.py
and exporters/metrics/state.py): split the pub/sub replies, decode the envelopes, check and
normalise the events, apply them to the metrics state, and, per scrape, render /metrics. Each
is timed on its own over the same pre-built stream (best of ``--repeat`` runs, CPU time of this
thread), so a change to one stage shows up in that stage's line. The whole-process figure,
against Flower, is bench/exporter_throughput.py's; this is the profile that explains it.

A benchmark, never a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.exporter_stream import Stream
from exporters.metrics.app import latency_breaking_points
from exporters.metrics.histogram import DEFAULT_BUCKETS, with_required
from exporters.metrics.queues import QueueSnapshot
from exporters.metrics.render import Extras, Renderer, Thresholds
from exporters.metrics.state import FleetState, Limits
from exporters.stream.envelope import decode
from exporters.stream.events import Checker
from exporters.stream.resp import PubSubParser
from exporters.stream.status import StreamStatus
from fleetops.apps import APP_LABEL, DEFAULT_APP


def as_pubsub(commands: bytes) -> bytes:
    """What a subscriber receives for these PUBLISH commands: pmessage replies."""
    parser = PubSubParser()
    out = []
    for reply in parser.feed(commands):
        channel, payload = reply[1], reply[2]
        pattern = b"/0.celeryev/*"
        out.append(
            b"*4\r\n$8\r\npmessage\r\n"
            + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in (pattern, channel, payload))
        )
    return b"".join(out)


def cpu(fn) -> float:  # type: ignore[no-untyped-def]
    started = time.thread_time()
    fn()
    return time.thread_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=5)
    # The mapping's cost on the hot path (FLEETOPS_EXPORTER_WORKER_GROUPS): the stream's
    # workers are celery@worker-NNN.
    parser.add_argument("--worker-groups", action="append", default=[], metavar="PATTERN")
    args = parser.parse_args()

    stream = Stream(workers=50, task_names=50)
    commands, events = stream.chunk(args.events)
    wire = as_pubsub(commands)
    payloads = PubSubParser().payloads(wire)
    bodies = [b for p in payloads for b in decode(p)]
    now = time.time()
    bounds = with_required(DEFAULT_BUCKETS, latency_breaking_points())
    print(f"{events:,} events in {len(payloads):,} messages ({len(wire) / 1e6:.1f} MB)")

    def best(fn) -> float:  # type: ignore[no-untyped-def]
        return min(cpu(fn) for _ in range(args.repeat))

    def split() -> None:
        PubSubParser().payloads(wire)

    def decode_all() -> None:
        for p in payloads:
            decode(p)

    def check_all() -> None:
        check = Checker().check
        for b in bodies:
            check(b, now)

    checker = Checker()
    checked = [checker.check(b, now) for b in bodies]

    limits = Limits(worker_groups=tuple(args.worker_groups))

    def apply_all() -> None:
        FleetState(bounds=bounds, limits=limits).apply_all(checked, 1.0)

    state = FleetState(bounds=bounds, limits=limits)
    state.apply_all(checked, 1.0)
    renderer = Renderer(static_labels={APP_LABEL: DEFAULT_APP})  # as the exporter labels one app
    extras = Extras(StreamStatus(), QueueSnapshot(), {}, 0, 0.0, Thresholds())

    def render() -> None:
        "".join(renderer.render(state, extras, 1.0, time.time()))

    stages = [("split replies", split), ("decode envelopes", decode_all),
              ("check + normalise", check_all), ("apply to state", apply_all)]  # fmt: skip
    total = 0.0
    for name, fn in stages:
        seconds = best(fn)
        total += seconds
        print(f"{name:>20}: {seconds / events * 1e6:6.2f} µs/event")
    print(f"{'hot path':>20}: {total / events * 1e6:6.2f} µs/event"
          f" -> at most {events / total:,.0f} events/s on one core")  # fmt: skip
    print(f"{'render /metrics':>20}: {best(render) * 1e3:6.1f} ms per scrape"
          f" ({len(state.task_series):,} task series)")  # fmt: skip


if __name__ == "__main__":
    main()
