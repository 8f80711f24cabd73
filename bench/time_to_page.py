"""How long after a queue crosses its breaking point does the page arrive? Measured on the whole
local fleet with the shipped default intervals; the goal is at most 2.5 minutes.

The fleet is ``fleetops up --load none`` (every process, the shipped Prometheus, Alertmanager
and pager configuration, nothing overridden). Each repeat fills a queue of its own that no
worker consumes with real Celery messages past its breaking-point depth from
fleetops/breaking_points.toml: the first hundred through ``send_task`` of the fleet's own client
app (task-sent events included, so the exporter discovers the queue as it discovers any other),
the rest as copies of one of them with their own task ids, in one LPUSH, so the depth crosses
the breaking level at one known instant. The clock starts then, and stops when the pager
receives CeleryQueueDepthBreaking for that queue.

The parts come from the systems themselves: the exporter's /metrics (watched every 0.5 s),
Prometheus' stored samples (the first scrape at the breaking level, carrying the scrape's own
timestamp), the ALERTS series (the first evaluation that made the alert pending and the one that
made it fire) and the pager's receive time. The worst case from the defaults is printed beside.

Usage::

    uv run --frozen python bench/time_to_page.py              # 3 repeats
    uv run --frozen python bench/time_to_page.py --repeats 5

Exit code: 0 every repeat paged within the goal; 1 one did not (or never paged). Ctrl-C (or
SIGTERM) stops the fleet.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import redis

# Run as a script (python bench/<name>.py) too, as the other benchmarks are.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alerts.config import AlertsConfig, duration_seconds
from alerts.generate import enabled_alerts, load_inputs
from bench.fleet_run import (
    LocalFleet,
    local_fleet,
    raw_samples,
    scraping,
    stop_on_signals,
    utc,
)
from bench.harness import samples, wait_for
from exporters.metrics.settings import ExporterSettings
from fleetops.breaking_points import BreakingPoints
from fleetops.settings import field_default
from workers.client import client_app

ALERT = "CeleryQueueDepthBreaking"
GOAL_SECONDS = 150.0
# Past the worst case from the defaults with room for a busy machine: a page later than this
# is not coming.
GIVE_UP_SECONDS = 360.0
EXPORTER_WATCH = 0.5
# Nothing consumes these queues: their tasks are never run, so the name need not exist.
TASK_NAME = "bench.never_consumed"
# Sent one by one through send_task before the rest are pushed at once.
SENT_FIRST = 100


@dataclass(frozen=True)
class Defaults:
    threshold: float
    poll: float
    scrape: float
    evaluation: float
    hold: float
    group_wait: float

    @property
    def worst(self) -> float:
        # The exporter polls just after the crossing, Prometheus scrapes just before the poll
        # lands, the rules were evaluated just before that sample arrived; then the full `for`
        # (pending is set at the first evaluation, firing at the one `for` later), then a whole
        # group_wait for the new group. Delivery to the pager adds milliseconds.
        return self.poll + self.scrape + self.evaluation + self.hold + self.group_wait


def shipped_defaults() -> Defaults:
    points: BreakingPoints
    config: AlertsConfig
    points, config = load_inputs(None)
    rule = next(r for r in enabled_alerts(points, config) if r.name == ALERT)
    return Defaults(
        threshold=points.queue_depth.breaking,
        poll=float(field_default(ExporterSettings, "exporter_poll_interval")),
        scrape=duration_seconds(config.prometheus.scrape_interval),
        evaluation=duration_seconds(config.prometheus.evaluation_interval),
        hold=duration_seconds(rule.hold),
        group_wait=duration_seconds(config.alertmanager.group_wait),
    )


@dataclass
class Measurement:
    queue: str
    crossed: float  # the breaking-level message is in Redis
    exported: float  # the exporter's /metrics first shows the breaking depth
    scraped: float  # the first Prometheus sample at the breaking depth (scrape timestamp)
    pending: float  # the evaluation that made the alert pending
    firing: float  # the evaluation that made it fire
    paged: float  # the pager received it

    @property
    def total(self) -> float:
        return self.paged - self.crossed

    def parts(self) -> str:
        return (
            f"exporter poll {self.exported - self.crossed:5.1f}s  scrape"
            f" {self.scraped - self.exported:5.1f}s  evaluation {self.pending - self.scraped:5.1f}s"
            f"  for {self.firing - self.pending:5.1f}s  group_wait+delivery"
            f" {self.paged - self.firing:5.1f}s"
        )


def fresh_copy(message: dict) -> bytes:
    """The same Celery message as another task: its own task id and delivery tag."""
    task_id = str(uuid.uuid4())
    headers = {**message["headers"], "id": task_id, "root_id": task_id}
    properties = {
        **message["properties"],
        "correlation_id": task_id,
        "delivery_tag": str(uuid.uuid4()),
    }
    return orjson.dumps({**message, "headers": headers, "properties": properties})


def publish(app, queue: str, count: int, client: redis.Redis) -> float:  # type: ignore[no-untyped-def]
    """Fill ``queue`` with ``count`` Celery messages; the wall time they are all in Redis.

    The first ones go through send_task, so the queue is declared and the exporter learns of it
    from their task-sent events, as it learns of any queue. The rest are copies of one of them
    with their own ids, pushed in one LPUSH: the depth steps past the breaking level at one
    known instant (send_task alone takes a minute for 10,000 on a busy machine)."""
    with app.producer_or_acquire() as producer:
        for n in range(SENT_FIRST):
            app.send_task(TASK_NAME, args=[n], queue=queue, producer=producer)
    template = orjson.loads(client.lindex(queue, 0))
    copies = [fresh_copy(template) for _ in range(count - SENT_FIRST)]
    client.lpush(queue, *copies)
    crossed = time.time()
    depth = client.llen(queue)
    if depth < count:
        raise RuntimeError(f"queue {queue} holds {depth} messages, not {count}")
    return crossed


def exporter_depth(fleet: LocalFleet, queue: str) -> float:
    text = httpx.get(fleet.urls["exporter"], timeout=10).text
    values = [
        v for labels, v in samples(text, "celery_queue_length") if labels.get("queue_name") == queue
    ]
    return max(values, default=0.0)


def first_page(fleet: LocalFleet, queue: str) -> dict | None:
    for note in fleet.notifications():
        if (
            note["channel"] == "page"
            and note["alertname"] == ALERT
            and note["status"] == "firing"
            and note["labels"].get("queue_name") == queue
        ):
            return note
    return None


def first_at_or_above(points: list[tuple[float, float]], level: float) -> float:
    return next(t for t, v in points if v >= level)


def measure_once(fleet: LocalFleet, app, defaults: Defaults, queue: str) -> Measurement:  # type: ignore[no-untyped-def]
    client = redis.Redis.from_url(fleet.broker_url)
    count = int(defaults.threshold) + SENT_FIRST  # the depth jumps from 100 past the level
    started = time.time()
    crossed = publish(app, queue, count, client)
    print(
        f"  {queue}: {count} messages sent in {time.time() - started:.1f}s;"
        f" breaking depth {defaults.threshold:.0f} reached at {utc(crossed)}",
        flush=True,
    )
    exported = 0.0
    page = None
    while page is None:
        fleet.alive()
        now = time.time()
        if now - crossed > GIVE_UP_SECONDS:
            raise TimeoutError(f"no page for {queue} within {GIVE_UP_SECONDS:g}s")
        if not exported and exporter_depth(fleet, queue) >= defaults.threshold:
            exported = now
        page = first_page(fleet, queue)
        time.sleep(EXPORTER_WATCH)
    paged = float(page["received_at"])
    prometheus = fleet.base("prometheus")
    window = f"{int(time.time() - crossed) + 60}s"
    depth = raw_samples(
        prometheus, f'celery_queue_length{{job="fleetops-exporter",queue_name="{queue}"}}',
        window, time.time(),
    )  # fmt: skip
    alert = f'ALERTS{{alertname="{ALERT}",queue_name="{queue}",alertstate="%s"}}'
    pending = raw_samples(prometheus, alert % "pending", window, time.time())
    firing = raw_samples(prometheus, alert % "firing", window, time.time())
    client.delete(queue)  # 10,000 messages per repeat need not stay in the fleet's Redis
    scraped = first_at_or_above(depth, defaults.threshold)
    return Measurement(
        queue=queue,
        crossed=crossed,
        # Watched every 0.5 s: a scrape that came first shows the exporter had it by then.
        exported=min(exported, scraped),
        scraped=scraped,
        pending=pending[0][0],
        firing=firing[0][0],
        paged=paged,
    )


def run(args: argparse.Namespace) -> int:
    defaults = shipped_defaults()
    print(
        f"shipped defaults: breaking depth {defaults.threshold:.0f}, exporter poll"
        f" {defaults.poll:g}s, scrape {defaults.scrape:g}s, evaluation {defaults.evaluation:g}s,"
        f" `for` {defaults.hold:g}s, group_wait {defaults.group_wait:g}s:"
        f" worst case {defaults.worst:g}s (goal {GOAL_SECONDS:g}s)",
        flush=True,
    )
    results: list[Measurement] = []
    failure = ""
    rng = random.Random()
    try:
        with local_fleet("none", "fleetops-time-to-page-", keep=args.keep) as fleet:
            prometheus = fleet.base("prometheus")
            wait_for(
                lambda: scraping(prometheus, "fleetops-exporter"), 120, "the first exporter scrape"
            )
            app = client_app(fleet.broker_url, name="bench-time-to-page")
            for n in range(1, args.repeats + 1):
                # A random phase against the scrape and evaluation ticks, as a real crossing has.
                time.sleep(rng.uniform(0, defaults.scrape))
                queue = f"bench_unconsumed_{n}"
                try:
                    result = measure_once(fleet, app, defaults, queue)
                except TimeoutError as exc:
                    failure = str(exc)
                    print(f"  {failure}", flush=True)
                    break
                results.append(result)
                print(f"  {queue}: paged after {result.total:5.1f}s = {result.parts()}", flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted: the fleet is stopped")
    return summarize(results, defaults, failure)


def summarize(results: list[Measurement], defaults: Defaults, failure: str) -> int:
    print(f"\n== time to page ({ALERT}), {len(results)} repeat(s) ==")
    if results:
        totals = [r.total for r in results]
        print(
            f"measured: min {min(totals):.1f}s  median {statistics.median(totals):.1f}s"
            f"  max {max(totals):.1f}s"
        )
        for r in results:
            print(f"  {r.total:5.1f}s = {r.parts()}")
    print(
        f"worst case from the defaults: {defaults.poll:g} poll + {defaults.scrape:g} scrape +"
        f" {defaults.evaluation:g} evaluation + {defaults.hold:g} for + {defaults.group_wait:g}"
        f" group_wait = {defaults.worst:g}s; goal {GOAL_SECONDS:g}s"
    )
    if failure or not results:
        print(f"RESULT: FAIL ({failure or 'nothing measured'})")
        return 1
    over = [r for r in results if r.total > GOAL_SECONDS]
    if over or defaults.worst > GOAL_SECONDS:
        print(f"RESULT: FAIL: over the {GOAL_SECONDS:g}s goal")
        return 1
    print(f"RESULT: every page within the {GOAL_SECONDS:g}s goal")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="crossings to measure")
    parser.add_argument("--keep", action="store_true", help="keep the run directory and logs")
    args = parser.parse_args()
    stop_on_signals()
    sys.exit(run(args))


if __name__ == "__main__":
    main()
