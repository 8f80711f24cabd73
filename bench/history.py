"""Task history speed: ingest into SQLite and PostgreSQL, the console's queries on a large
history, and Flower's in-memory state and search on the same tasks, side by side in one run.

* Ingest: a realistic event stream (50 workers, 50 task names, producers' task-sent, 90 %
  success, 7 % failure with a traceback, 3 % retried then succeeded, worker heartbeats, events
  of concurrent tasks interleaved and a few duplicated) written by the recorder's own
  ``HistoryWriter`` in batches of the recorder's default size, on one Python thread. Reported:
  events/s over the whole run and over the slowest tenth of the batches ("sustained"), and
  the CPU seconds of this process per 100k events. Flower's ``EventsState`` eats the same
  stream for the ratio.
* Queries: ``--rows`` tasks over the last 7 days (the stream's tasks folded by the recorder's
  merge, then bulk-loaded: the table is what a recorder would have written), then each Tasks
  and Failures page query of ``exporters.history.queries`` as the console calls it, median of
  5 warm runs. Flower's ``TaskSearchEngine`` searches the same tasks in memory.

Quick:  uv run --frozen python -m bench.history --rows 100000 --events 100000
Full:   uv run --frozen python -m bench.history            (1,000,000 rows, 500,000 events)
PostgreSQL is the machine's server (or FLEETOPS_TEST_POSTGRES_ADMIN_URL, or a throwaway
cluster) through tests/postgres.py; each run uses fresh databases and drops them.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from bench.harness import FleetNames
from exporters.history import migrate
from exporters.history.database import create_history_engine
from exporters.history.merge import BatchMerger, Limits
from exporters.history.queries import TaskFilter, failures, search_page, task_detail
from exporters.history.schema import TRIGRAM_INDEXES, tasks
from exporters.history.settings import HistorySettings
from exporters.history.writer import HistoryWriter
from exporters.stream.events import Checker

Event = dict[str, Any]
DAY = 86_400.0
PAGE = 200  # rows the console's Tasks page asks for
GOALS = {"sqlite": 10_000, "postgresql": 20_000}  # events/s, from issue 7
QUERY_GOAL_MS = 200.0
# Flower keeps every task as Python objects: beyond this many the run would swap.
FLOWER_MAX_ROWS = 1_000_000

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/app/.venv/lib/python3.11/site-packages/celery/app/trace.py", line 453,'
    " in trace_task\n    R = retval = fun(*args, **kwargs)\n"
    '  File "/app/workers/images/tasks.py", line 88, in make_thumbnails\n'
    "    raise {exc}\n{exc}\n"
)
FAILURES = (
    ("ValueError", "cannot decode image img-{n:07d}"),
    ("TimeoutError", "storage did not answer within 30s for img-{n:07d}"),
    ("KeyError", "'size'"),
    ("ConnectionError", "upstream reset by peer while fetching img-{n:07d}"),
)


def default_of(name: str) -> Any:
    """The recorder's own default, so the benchmark measures what ships."""
    return HistorySettings.model_fields[name].default


# -- the event stream ----------------------------------------------------------------------
class Fleet(FleetNames):
    """The fleet of bench/exporter_stream.py, its events as the recorder's writer gets them
    (checked dicts, not broker messages)."""

    def event(self, kind: str, hostname: str, timestamp: float, **fields: Any) -> Event:
        return {
            "type": kind, "hostname": hostname, "timestamp": timestamp,
            "clock": self.next_clock(hostname),
            "local_received": timestamp, "utcoffset": 0, "pid": 4242, **fields,
        }  # fmt: skip

    def lifecycle(self, start: float) -> list[Event]:
        rng = self.rng
        task_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        name = rng.choice(self.names)
        queue = self.queue_of[name]
        worker = rng.choice(self.worker_names)
        image = rng.randrange(10_000_000)
        args = f"({image}, 'user-{rng.randrange(100_000):05d}@example.com')"
        kwargs = f"{{'image_id': 'img-{image:07d}', 'size': 'w{rng.choice((320, 640, 1280))}'}}"
        out = [
            self.event("task-sent", rng.choice(self.producer_names), start, uuid=task_id,
                       name=name, args=args, kwargs=kwargs, retries=0, root_id=task_id,
                       parent_id=None, eta=None, expires=None, queue=queue, exchange="",
                       routing_key=queue),
        ]  # fmt: skip
        t = start + rng.expovariate(50.0)
        roll = rng.random()
        attempts = 2 if roll >= 0.97 else 1
        for attempt in range(attempts):
            out.append(self.event("task-received", worker, t, uuid=task_id, name=name,
                                  args=args, kwargs=kwargs, retries=attempt, root_id=task_id,
                                  parent_id=None, eta=None, expires=None))  # fmt: skip
            t += rng.expovariate(200.0)
            out.append(self.event("task-started", worker, t, uuid=task_id))
            runtime = rng.expovariate(5.0)
            t += runtime
            if attempt + 1 < attempts:
                exc = "TransientError('storage busy')"
                out.append(self.event("task-retried", worker, t, uuid=task_id, exception=exc,
                                      traceback=TRACEBACK.format(exc=exc)))  # fmt: skip
                t += 5.0
                worker = rng.choice(self.worker_names)
            elif roll < 0.90 or attempts == 2:
                out.append(self.event("task-succeeded", worker, t, uuid=task_id,
                                      result="None", runtime=runtime))  # fmt: skip
            else:
                kind, message = rng.choice(FAILURES)
                exc = f"{kind}({message.format(n=image)!r})"
                out.append(self.event("task-failed", worker, t, uuid=task_id, exception=exc,
                                      traceback=TRACEBACK.format(exc=exc)))  # fmt: skip
        return out

    def heartbeats(self, timestamp: float) -> list[Event]:
        return [
            self.event("worker-heartbeat", w, timestamp, freq=2.0, active=2, processed=1000,
                       loadavg=[0.5, 0.5, 0.5], sw_ident="py-celery", sw_ver="5.5.0",
                       sw_sys="Linux")
            for w in self.worker_names
        ]  # fmt: skip


def stream(fleet: Fleet, events: int, *, start: float, rate: float = 5_000.0) -> list[Event]:
    """About ``events`` events of ``rate`` tasks/s in arrival order: concurrent tasks'
    events interleave, heartbeats every 2 s, and 0.5 % of the events arrive twice (a replay)."""
    out: list[Event] = []
    t, next_beat = start, start
    while len(out) < events:
        if t >= next_beat:
            out.extend(fleet.heartbeats(t))
            next_beat += 2.0
        out.extend(fleet.lifecycle(t))
        t += 1.0 / rate
    # Arrival order is roughly time order, with the jitter of several senders.
    jitter = fleet.rng.random
    out.sort(key=lambda event: event["timestamp"] + jitter() * 0.02)
    del out[events:]
    # Replays (from the disk spool, or a redelivery) arrive late.
    out.extend(out[index] for index in fleet.rng.sample(range(len(out)), len(out) // 200))
    return out


def checked(events: list[Event]) -> list[Event]:
    """The events as the recorder's writer gets them: its consumer thread checks each one
    first (exporters/stream/events.py), which also types the fields and parses the exception
    type. Done before any timing: checking is the consumer's cost, not the writer's."""
    checker = Checker()
    now = time.time()
    return [checker.check(event, now) for event in events]


def history_rows(fleet: Fleet, rows: int, *, end: float) -> Iterator[list[Event]]:
    """``rows`` tasks spread over the 7 days before ``end``, in chunks of lifecycles."""
    step = 7 * DAY / rows
    chunk: list[Event] = []
    for n in range(rows):
        chunk.extend(fleet.lifecycle(end - 7 * DAY + n * step))
        if len(chunk) >= 40_000:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# -- databases -----------------------------------------------------------------------------
@contextlib.contextmanager
def databases(which: list[str], workdir: Path) -> Iterator[dict[str, str]]:
    urls: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        for kind in which:
            if kind == "sqlite":
                urls[kind] = f"sqlite:///{workdir / f'history-{uuid.uuid4().hex[:6]}.db'}"
            else:
                from tests import postgres

                admin = stack.enter_context(postgres.admin_dsn())
                name, url = postgres.create_database(admin)
                stack.callback(postgres.drop_database, admin, name)
                urls[kind] = url
        yield urls


def fresh_engine(url: str) -> Engine:
    engine = create_history_engine(url)
    migrate.upgrade(engine)
    return engine


# -- ingest --------------------------------------------------------------------------------
@dataclass
class Ingest:
    events: int
    seconds: float
    cpu_seconds: float  # of this process: merge, driver, and SQLite itself
    sustained: float  # events/s over the slowest tenth of the batches
    server_cpu_seconds: float = 0.0  # of the PostgreSQL backend serving the writer

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def per_core(self) -> float:
        """Events per CPU second of the busier side: the rate with a core of its own, which a
        shared, loaded machine's wall clock cannot show."""
        return self.events / max(self.cpu_seconds, self.server_cpu_seconds)


def backend_cpu(engine: Engine) -> Callable[[], float]:
    """CPU seconds so far of the PostgreSQL backend process behind the pooled connection (the
    writer uses one connection at a time, so the pool hands back the same one)."""
    if engine.dialect.name != "postgresql":
        return lambda: 0.0
    import psutil

    with engine.connect() as connection:
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    try:
        process = psutil.Process(pid)
        process.cpu_times()
    except (psutil.Error, OSError):  # a remote server: not ours to see
        return lambda: 0.0

    def seconds() -> float:
        times = process.cpu_times()
        return times.user + times.system

    return seconds


def ingest(engine: Engine, events: list[Event], batch_size: int) -> Ingest:
    writer = HistoryWriter(
        engine,
        Limits(
            record_args=default_of("history_record_args"),
            args_max_chars=default_of("history_args_max_chars"),
            traceback_max_chars=default_of("history_traceback_max_chars"),
        ),
    )
    rates: list[float] = []
    server = backend_cpu(engine)
    gc.collect()
    server_cpu, cpu, wall = server(), time.process_time(), time.perf_counter()
    for start in range(0, len(events), batch_size):
        batch = events[start : start + batch_size]
        began = time.perf_counter()
        writer.write(batch)
        rates.append(len(batch) / (time.perf_counter() - began))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    server_cpu = server() - server_cpu
    rates.sort()
    slowest = rates[: max(1, len(rates) // 10)]
    return Ingest(len(events), wall, cpu, statistics.fmean(slowest), server_cpu)


def flower_state(max_tasks: int) -> Any:
    from flower.events import EventsState

    return EventsState(max_tasks_in_memory=max_tasks)


def flower_ingest(events: list[Event]) -> Ingest:
    """Flower's own state machine on the same events (what its event thread does per event,
    without the HTTP server it shares that thread with)."""
    state = flower_state(len(events))
    rates: list[float] = []
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    apply = state.event
    for start in range(0, len(events), 2000):
        began = time.perf_counter()
        for event in events[start : start + 2000]:
            apply(event)
        rates.append(2000 / (time.perf_counter() - began))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    rates.sort()
    return Ingest(len(events), wall, cpu, statistics.fmean(rates[: max(1, len(rates) // 10)]))


# -- the query data set --------------------------------------------------------------------
def load_rows(engine: Engine, chunks: Iterable[list[dict[str, Any]]]) -> float:
    """Bulk-load merged rows, then build the indexes and the planner's statistics: the same
    table and indexes the recorder's upserts would leave, in a fraction of the time. The rows
    stream in: ten million of them would not fit in memory as dicts."""
    began = time.perf_counter()
    columns = [column.name for column in tasks.columns]
    indexes = [index for index in tasks.indexes if index.name]
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as connection:
        for index in indexes:
            index.drop(connection)
        if postgres:
            for name in TRIGRAM_INDEXES:
                connection.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
            cursor = connection.connection.cursor()
            copy_sql = f"COPY history_tasks ({', '.join(columns)}) FROM STDIN"
            with cursor.copy(copy_sql) as copy:  # type: ignore[attr-defined]
                for rows in chunks:
                    for row in rows:
                        copy.write_row([row[name] for name in columns])
        else:
            sql = str(tasks.insert().compile(dialect=engine.dialect))
            for rows in chunks:
                connection.exec_driver_sql(sql, [tuple(r[n] for n in columns) for r in rows])
        if postgres:
            # What an operator sets for a bulk load's index builds; queries do not use it.
            connection.exec_driver_sql("SET LOCAL maintenance_work_mem = '1GB'")
        for index in indexes:
            index.create(connection)
        if postgres:
            for name, column in TRIGRAM_INDEXES.items():
                connection.exec_driver_sql(
                    f"CREATE INDEX {name} ON history_tasks USING gin ({column} gin_trgm_ops)"
                )
        connection.exec_driver_sql("ANALYZE")
    if postgres:
        # What autovacuum does soon after a bulk insert: set the visibility map, without which
        # PostgreSQL cannot answer from an index alone.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM history_tasks")
    return time.perf_counter() - began


@dataclass
class QueryRows:
    """The rows a recorder would have stored for ``rows`` tasks, generated again (the same
    ones: the seed is fixed) for each database; ``events`` keeps the raw events for Flower's
    side when asked, and ``sample_id`` is a task from the middle of the history."""

    rows: int
    end: float
    events: list[Event] | None = None
    sample_id: str = ""

    def chunks(self) -> Iterator[list[dict[str, Any]]]:
        merger = BatchMerger(
            Limits(default_of("history_record_args"), default_of("history_args_max_chars"),
                   default_of("history_traceback_max_chars"))
        )  # fmt: skip
        done = 0
        for chunk in history_rows(Fleet(seed=11), self.rows, end=self.end):
            merger.clear()
            merger.add_all(checked(chunk))
            merged = list(merger.tasks.values())
            if done <= self.rows // 2 < done + len(merged):
                self.sample_id = merged[0]["task_id"]
            done += len(merged)
            if self.events is not None:
                self.events.extend(chunk)
            yield merged
        merger.clear()


@dataclass
class Query:
    label: str
    ours: Callable[[Engine], Any]
    # The same question put to Flower's in-memory search, or None when Flower cannot ask it.
    flower: Callable[[Any], Any] | None = None


def queries(end: float, fleet: Fleet, sample_id: str) -> list[Query]:
    name = fleet.names[7]
    day, week = end - DAY, end - 7 * DAY
    needle = "user-04242@"

    def page(filters: TaskFilter) -> Callable[[Engine], Any]:
        # One Tasks page: the newest 200 matches and the capped count.
        return lambda engine: search_page(engine, filters, limit=PAGE)

    def flower(**kwargs: Any) -> Callable[[Any], Any]:
        query = kwargs.pop("query", "")
        return lambda state: state.search_engine.search(state.tasks, query, limit=PAGE, **kwargs)

    return [
        Query("newest tasks (no filter)", page(TaskFilter()), flower()),
        Query("name + state + last 24h",
              page(TaskFilter(name=name, state="FAILURE", since=day, until=end)),
              flower(task_type=name, state="FAILURE", received_start=day, received_end=end)),
        Query("name, last 7 days", page(TaskFilter(name=name, since=week)),
              flower(task_type=name, received_start=week)),
        Query("exception class, last 7 days",
              page(TaskFilter(exception="TimeoutError", since=week))),
        Query("exception text", page(TaskFilter(exception_text="img-0042"))),
        Query(f"argument text {needle!r}, last 24h", page(TaskFilter(text=needle, since=day)),
              flower(query=needle, received_start=day)),
        Query(f"argument text {needle!r}, 7 days", page(TaskFilter(text=needle)),
              flower(query=needle)),
        Query("argument text 'w1280' (common)", page(TaskFilter(text="w1280")),
              flower(query="w1280")),
        Query("failures page, last 24h", lambda e: failures(e, since=day, limit=500)),
        Query("failures page, last 7 days", lambda e: failures(e, since=week, limit=500)),
        Query("task detail", lambda e: task_detail(e, sample_id),
              lambda s: s.tasks.get(sample_id).as_dict()),
    ]  # fmt: skip


def median_ms(function: Callable[[], Any], runs: int = 5) -> float:
    function()  # warm: caches, the planner, connection pool
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        function()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


# -- the run -------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="tasks for the queries")
    parser.add_argument("--events", type=int, default=500_000, help="events to ingest")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--no-flower", action="store_true", help="skip Flower's side")
    parser.add_argument(
        "--flower-events", type=int, default=100_000, help="events for Flower's ingest rate"
    )
    parser.add_argument(
        "--profile", choices=("sqlite", "postgresql"), help="cProfile the ingest into it"
    )
    args = parser.parse_args()
    which = [kind.strip() for kind in args.databases.split(",") if kind.strip()]
    batch_size = default_of("history_batch_size")
    now = time.time()
    print(f"history bench: {args.events:,} events ingested in batches of {batch_size},"
          f" {args.rows:,} tasks queried; one Python thread")  # fmt: skip

    fleet = Fleet()
    events = stream(fleet, args.events, start=now - 3600)
    checked_events = checked(events)  # the writer's input; Flower eats the raw events
    results: dict[str, Ingest] = {}
    with (
        tempfile.TemporaryDirectory(prefix="history-bench-") as workdir,
        databases(which, Path(workdir)) as urls,
    ):
        print("\n== ingest ==")
        for kind, url in urls.items():
            engine = fresh_engine(url)
            if args.profile == kind:
                import cProfile
                import pstats

                profiler = cProfile.Profile()
                profiler.enable()
                results[kind] = ingest(engine, checked_events, batch_size)
                profiler.disable()
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
            else:
                results[kind] = ingest(engine, checked_events, batch_size)
            engine.dispose()
            report_ingest(kind, results[kind], GOALS.get(kind))
        if not args.no_flower:
            flower_result = flower_ingest(events[: args.flower_events])
            report_ingest("flower EventsState (memory)", flower_result, None)
            for kind, result in results.items():
                print(
                    f"  ratio {kind} / flower: {result.rate / flower_result.rate:.2f}x wall,"
                    f" {result.per_core / flower_result.per_core:.2f}x per CPU-second"
                )
        del events, checked_events

        print(f"\n== queries on {args.rows:,} tasks (median of 5, ms) ==")
        flower_side = not args.no_flower
        if flower_side and args.rows > FLOWER_MAX_ROWS:
            print(f"  (Flower's side skipped: {args.rows:,} tasks would not fit in its memory)")
            flower_side = False
        history_events: list[Event] = []
        data = QueryRows(args.rows, now, history_events if flower_side else None)
        table: dict[str, dict[str, float | None]] = {}
        for kind, url in urls.items():
            engine = fresh_engine(url)
            # Rows are generated while they load (about half of this time).
            print(f"  {kind}: built and loaded in {load_rows(engine, data.chunks()):.1f}s")
            data.events = None  # Flower's events are kept once
            plan = queries(now, Fleet(seed=11), data.sample_id)
            for query in plan:
                ms = median_ms(lambda q=query, e=engine: q.ours(e))
                table.setdefault(query.label, {})[kind] = ms
            engine.dispose()
        # Printed now: Flower's million tasks take minutes to build and gigabytes of memory.
        report_queries(table, list(urls), flower=False)
        if flower_side:
            began = time.perf_counter()
            state = flower_state(args.rows)
            # Bulk path: Celery's state machine per event, then one index build, as Flower
            # does when it loads a saved state (its per-event index is measured above).
            apply = type(state).__mro__[1].event
            for event in history_events:
                apply(state, event)
            state.search_engine.rebuild(state.tasks.items())
            print(f"  flower: {len(state.tasks):,} tasks in memory after"
                  f" {time.perf_counter() - began:.1f}s")  # fmt: skip
            for query in plan:
                if query.flower is not None:
                    table[query.label]["flower"] = median_ms(
                        lambda q=query: q.flower(state)  # type: ignore[misc]
                    )
            del history_events
            print("\n  side by side with Flower's in-memory search:")
            report_queries(table, list(urls), flower=True)


def report_ingest(label: str, result: Ingest, goal: int | None) -> None:
    verdict = ""
    if goal:
        verdict = f"; goal {goal:,}/s per core: {'met' if result.per_core >= goal else 'MISSED'}"
    server = ""
    if result.server_cpu_seconds:
        server = f", server {result.server_cpu_seconds / result.events * 1e5:.2f}"
    print(
        f"  {label:<28} {result.rate:>8,.0f} events/s wall, {result.sustained:>8,.0f} in the"
        f" slowest 10% of batches; {result.per_core:>8,.0f} per CPU-second (CPU s per 100k:"
        f" recorder {result.cpu_seconds / result.events * 1e5:.2f}{server}){verdict}"
    )


def report_queries(table: dict[str, dict[str, float | None]], kinds: list[str],
                   flower: bool) -> None:  # fmt: skip
    columns = [*kinds, *(["flower"] if flower else [])]
    header = f"  {'query':<38}" + "".join(f"{c:>12}" for c in columns)
    if flower:
        header += "".join(f"{'flower/' + k[:6]:>16}" for k in kinds)
    print(header)
    worst = 0.0
    for label, values in table.items():
        line = f"  {label:<38}"
        for column in columns:
            value = values.get(column)
            line += f"{'n/a':>12}" if value is None else f"{value:>12.1f}"
        if flower:
            theirs = values.get("flower")
            for kind in kinds:
                ours = values.get(kind)
                ratio = "n/a" if theirs is None or not ours else f"{theirs / ours:.2f}x"
                line += f"{ratio:>16}"
        worst = max([worst, *(values[k] or 0.0 for k in kinds if k in values)])
        print(line)
    verdict = "met" if worst < QUERY_GOAL_MS else "MISSED"
    print(f"  slowest console query: {worst:.1f} ms; goal < {QUERY_GOAL_MS:.0f} ms: {verdict}")
    if flower:
        print("  (n/a: Flower's search cannot filter by exception or group failures)")


if __name__ == "__main__":
    main()
