"""The history recorder and Flower side by side on one real Redis, fed a realistic stream at
rising rates, the recorder writing into SQLite and, with ``--postgres``, into PostgreSQL.

    uv run --frozen python bench/recorder_throughput.py                  # SQLite: 2-4 minutes
    uv run --frozen python bench/recorder_throughput.py --postgres       # and PostgreSQL: 5-7
    uv run --frozen python bench/recorder_throughput.py --postgres --no-sqlite \\
        --rates 7500,15000,20000,30000 --seconds 10
    uv run --frozen python bench/recorder_throughput.py --rates 30000 --keep-going \\
        --profile /tmp/recorder-prof                     # cProfile every thread at overload

The recorder runs as users run it, ``python -m fleetops recorder`` configured by FLEETOPS_*
variables (its own data directory, database and metrics port), next to Flower, each pinned to
a core of its own when there are two (the database server is the machine's and is not
pinned). The stream is bench/exporter_stream.py's, published straight into Redis at each
step's rate (bench/harness.py); a short warm-up first migrates the schema, so no step pays
for it. Per rate and consumer, the table has what the ladder of bench/exporter_throughput.py
has; for the recorder, "consumed" is what its own ``fleetops_history_events_written_total``
says it wrote, out of every event published, heartbeats included, and after it:

* the cross-check in the database: task rows added against the tasks published (one
  ``task-sent`` each), rows left in an unfinished state, worker rows;
* the CPU per event of the database server, apart from the recorder's: for PostgreSQL the
  backends serving the recorder's connections (found in ``pg_stat_activity`` by their
  ``application_name``), and separately the cluster's background processes (WAL writer,
  checkpointer, autovacuum: shared with anything else that uses the server); SQLite runs
  inside the recorder, so its cost is in the recorder's figure;
* the rate it wrote at from the first publish to its last write ("end to end"), which is its
  capacity when it fell behind; and what it says it dropped, rejected or spooled to disk.

``--threads`` runs the recorder through bench/profile_threads.py to split its CPU by thread
(reader, consumer, writer); ``--profile DIR`` also profiles every thread with cProfile and
prints where each thread's CPU goes, by stage.

A benchmark, never a test: numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
import psutil
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness
from bench.exporter_stream import Stream
from bench.history import databases
from bench.profile_threads import add_clock_option
from fleetops.fleet.spec import free_port

# The recorder's PostgreSQL connections carry this name, so its backends can be told from the
# benchmark's own counting connection and from anyone else's on a shared server.
RECORDER_APP = "fleetops-recorder-bench"
WRITTEN = "fleetops_history_events_written_total"
# Cluster-wide PostgreSQL processes whose work a write load causes but cannot be attributed.
BACKGROUND = ("walwriter", "checkpointer", "background writer", "autovacuum")


# ---- the database under the recorder ---------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    tasks: int
    unfinished: int  # not in a final state (state_class 2): its last events are missing
    workers: int


COUNT_SQL = (
    "SELECT (SELECT count(*) FROM history_tasks),"
    " (SELECT count(*) FROM history_tasks WHERE state_class < 2),"
    " (SELECT count(*) FROM history_workers)"
)


class Database(Protocol):
    kind: str
    url: str  # what the recorder is given

    def counts(self) -> Counts: ...

    def server_cpu(self) -> tuple[float, float, int] | None:
        """(backends' CPU s, background processes' CPU s, backends); None: in-process."""


class SqliteDatabase:
    kind = "sqlite"

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = make_url(url).database

    def counts(self) -> Counts:
        # Read-only, beside the writer: WAL lets a reader in while the recorder writes.
        try:
            with contextlib.closing(
                sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
            ) as connection:
                return Counts(*connection.execute(COUNT_SQL).fetchone())
        except sqlite3.OperationalError:  # not migrated yet
            return Counts(0, 0, 0)

    def server_cpu(self) -> tuple[float, float, int] | None:
        return None


class PostgresDatabase:
    kind = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = f"{url}?application_name={RECORDER_APP}"
        self.name = make_url(url).database
        self.dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
        # Every process seen, and its last reading: a backend that ends keeps what it used.
        self._seen: dict[int, psutil.Process] = {}
        self._last: dict[int, float] = {}

    def _connect(self):  # type: ignore[no-untyped-def]
        import psycopg

        return psycopg.connect(self.dsn, autocommit=True, application_name="bench-count")

    def counts(self) -> Counts:
        import psycopg

        try:
            with self._connect() as connection:
                row = connection.execute(COUNT_SQL).fetchone()
        except psycopg.errors.UndefinedTable:
            return Counts(0, 0, 0)
        assert row is not None
        return Counts(*row)

    def server_cpu(self) -> tuple[float, float, int] | None:
        with self._connect() as connection:
            pids = [
                pid
                for (pid,) in connection.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
                    (self.name, RECORDER_APP),
                )
            ]
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                self._seen.setdefault(pid, psutil.Process(pid))
        backends = sum(self._reading(pid) for pid in self._seen)
        background = 0.0
        for process in psutil.process_iter(["name", "cmdline"]):
            command = " ".join(process.info["cmdline"] or ())
            if process.info["name"] == "postgres" and any(b in command for b in BACKGROUND):
                background += self._reading(process.pid, process)
        return backends, background, len(pids)

    def _reading(self, pid: int, process: psutil.Process | None = None) -> float:
        try:
            times = (process or self._seen[pid]).cpu_times()
            self._last[pid] = times.user + times.system
        except psutil.Error:
            pass  # ended: its last reading stands
        return self._last.get(pid, 0.0)


@contextlib.contextmanager
def database(kind: str, workdir: Path) -> Iterator[Database]:
    """A fresh database of this kind (bench/history.py's: a temp file, or a throwaway
    PostgreSQL database dropped at the end)."""
    with databases([kind], workdir) as urls:
        yield SqliteDatabase(urls[kind]) if kind == "sqlite" else PostgresDatabase(urls[kind])


# ---- the recorder ----------------------------------------------------------------------------


def totals(text: str) -> dict[str, float]:
    """The recorder's counters the benchmark reports, summed over their labels."""
    wanted = {
        "consumed": "fleetops_history_events_total",
        "written": WRITTEN,
        "dropped": "fleetops_history_events_dropped_total",
        "rejected": "fleetops_history_events_rejected_total",
        "malformed": "fleetops_history_events_malformed_total",
        "quarantined": "fleetops_history_events_quarantined_total",
        "write errors": "fleetops_history_write_errors_total",
        "reconnects": "fleetops_history_broker_reconnects_total",
    }
    out = {key: sum(v for _l, v in harness.samples(text, name)) for key, name in wanted.items()}
    disk = harness.samples(text, "fleetops_history_buffered_events")
    out["on disk"] = sum(v for labels, v in disk if labels.get("where") == "disk")
    return out


def written(text: str) -> int:
    return int(sum(v for _labels, v in harness.samples(text, WRITTEN)))


def group(name: str) -> str:
    """A thread's name as the report shows it: the HTTP server's request threads as one."""
    return "http requests" if "process_request_thread" in name else name


@dataclass
class Recorder(harness.Consumer):
    """The recorder counts every event it writes; after a step it also reads the database."""

    database: Database | None = None
    threads_path: Path | None = None  # bench/profile_threads.py's thread names, if it runs so
    workers: int = 0
    _metrics: dict[str, float] = field(default_factory=dict)
    _counts: Counts = Counts(0, 0, 0)
    _server: tuple[float, float, int] | None = None
    _threads: dict[str, float] = field(default_factory=dict)
    _cpu: float = 0.0

    def expected(self, plan: harness.Plan) -> int:
        return plan.events

    def full_metrics(self) -> dict[str, float]:
        self.scrapes += 1
        return totals(httpx.get(self.url + "/metrics", timeout=60).text)

    def thread_cpu(self) -> dict[str, float]:
        """CPU seconds so far by thread name; empty unless started by profile_threads.py."""
        if self.threads_path is None or not self.threads_path.exists() or self.ps is None:
            return {}
        names = {}
        for line in self.threads_path.read_text().splitlines():
            entry = json.loads(line)
            names[entry["tid"]] = group(entry["name"])
        used: dict[str, float] = {}
        with contextlib.suppress(psutil.Error):
            for thread in self.ps.threads():
                name = names.get(thread.id, "other")
                used[name] = used.get(name, 0.0) + thread.user_time + thread.system_time
        return used

    def begin_step(self) -> None:
        assert self.database is not None
        self._metrics = self.full_metrics()
        self._counts = self.database.counts()
        self._server = self.database.server_cpu()
        self._threads = self.thread_cpu()
        self._cpu = self.cpu_seconds()

    def finish_step(self, plan: harness.Plan, result: harness.Result, used_cpu: float) -> None:
        assert self.database is not None
        server = self.database.server_cpu()
        threads = self.thread_cpu()
        cpu = self.cpu_seconds() - self._cpu
        metrics = self.full_metrics()
        counts = self.database.counts()
        events = max(result.consumed, 1)
        result.cpu_per_event = used_cpu / events
        parts = [f"of {plan.events}"]
        said = {
            key: int(value - self._metrics.get(key, 0.0))
            for key, value in metrics.items()
            if key not in ("written", "on disk") and value != self._metrics.get(key, 0.0)
        }
        if said.get("consumed") == plan.events:
            del said["consumed"]  # the expected case: it took in every event published
        if metrics["on disk"]:
            said["still on disk"] = int(metrics["on disk"])
        if said:
            parts.append(f"its metrics: {said}")
        sent = plan.by_type.get("task-sent", 0)
        new_tasks = counts.tasks - self._counts.tasks
        check = "ok" if new_tasks == sent and not counts.unfinished else "MISMATCH"
        parts.append(
            f"rows: tasks +{new_tasks}/{sent}, unfinished {counts.unfinished},"
            f" workers {counts.workers}/{self.workers} ({check})"
        )
        if server is None or self._server is None:
            parts.append("db: in-process")
        else:
            backends = (server[0] - self._server[0]) / events
            background = (server[1] - self._server[1]) / events
            parts.append(
                f"db server {backends * 1e6:.1f} us/ev ({server[2]} backends)"
                f" + cluster background {background * 1e6:.1f} us/ev (shared)"
            )
        # From the first publish to the last write: its capacity when it fell behind.
        span = len(plan.ticks) * harness.TICK + result.catch_up
        parts.append(f"end to end {result.consumed / span:.0f} ev/s")
        if threads:
            # Shares of the process's CPU, so they hold whatever the scrapes cost.
            share = {
                name: (seconds - self._threads.get(name, 0.0)) / max(cpu, 1e-9)
                for name, seconds in threads.items()
            }
            parts.append(
                "threads: "
                + ", ".join(
                    f"{name} {value:.0%}"
                    for name, value in sorted(share.items(), key=lambda kv: -kv[1])
                    if value >= 0.01
                )
            )
        result.extra = "; ".join(parts)


def recorder(
    redis_url: str,
    db: Database,
    workdir: Path,
    core: int | None,
    workers: int,
    wrap: list[str] | None,
) -> Recorder:
    port = free_port()
    data_dir = workdir / f"recorder-{db.kind}"
    threads_path = data_dir / "threads.jsonl" if wrap is not None else None
    prefix = [sys.executable]
    if wrap is not None:
        assert threads_path is not None
        data_dir.mkdir(parents=True, exist_ok=True)
        prefix += [str(Path(__file__).with_name("profile_threads.py")), "--names",
                   str(threads_path), *wrap]  # fmt: skip
    argv = [*prefix, "-m", "fleetops", "recorder", "--log-level", "WARNING"]
    env = {
        "FLEETOPS_BROKER_URL": redis_url,
        "FLEETOPS_DATA_DIR": str(data_dir),
        "FLEETOPS_HISTORY_DATABASE_URL": db.url,
        "FLEETOPS_HISTORY_METRICS_HOST": "127.0.0.1",
        "FLEETOPS_HISTORY_METRICS_PORT": str(port),
    }
    # Only the written counter while it catches up, polled often: the catch-up time is read
    # to a tenth of a second, and what the polling costs is taken out of the CPU per event.
    return Recorder(
        "recorder", argv, "/metrics", f"/metrics?name[]={WRITTEN}", written, port,
        workdir / f"recorder-{db.kind}.log", core, env=env, poll=0.1, database=db,
        threads_path=threads_path, workers=workers, stop_timeout=120 if wrap else 20,
    )  # fmt: skip


# ---- the profile -----------------------------------------------------------------------------

# Where a function's own time goes, by the file it is in: the first match wins.
STAGES = (
    ("read: socket, RESP split, hand-over", ("stream/redis_reader", "stream/resp", "batches.py")),
    ("decode envelopes", ("stream/envelope", "pybase64", "b64decode")),
    ("check events", ("stream/events",)),
    ("buffer (memory, spool)", ("history/buffer",)),
    ("merge into rows", ("history/merge",)),
    ("writer: sort, rows, JSON/tuples", ("history/writer", "history/upsert", "orjson.dumps")),
    ("SQLAlchemy", ("sqlalchemy/",)),
    ("psycopg (driver, round trip)", ("psycopg/", "psycopg_binary", "psycopg_c")),
    ("sqlite3: execute", ("sqlite3.Cursor", "sqlite3.Connection' objects>.execute")),
    ("sqlite3: commit", ("commit",)),
    ("metrics, health", ("prometheus_client", "stream/health", "history/metrics", "serving")),
    ("waiting, locks, sleep", ("lock", "sleep", "select", "poll", "wait")),
)


def stage_of(path: str, name: str) -> str:
    where = f"{path}:{name}"
    for stage, needles in STAGES:
        if any(needle in where for needle in needles):
            return stage
    return "other"


def stage_shares(
    entries: dict, key: tuple[str, int, str], entry: tuple, depth: int = 0
) -> list[tuple[str, float]]:
    """A function's own time by stage. A builtin (``dict.get``, ``len``) or a function no stage
    names is charged to its callers, in proportion to the time each spent in it: its cost
    belongs to the stage that called it."""
    path, _line, name = key
    stage = stage_of(path, name)
    if stage != "other" or depth >= 3 or not entry[4]:
        return [(stage, entry[2])]
    callers = entry[4]
    spent = sum(c[2] for c in callers.values()) or 1.0
    shares: list[tuple[str, float]] = []
    for caller, timing in callers.items():
        part = entry[2] * timing[2] / spent
        caller_entry = entries.get(caller)
        if caller_entry is None:
            shares.append(("other", part))
            continue
        # Split as the caller's own time splits (the caller may be charged onwards itself).
        upward = stage_shares(entries, caller, caller_entry, depth + 1)
        whole = sum(seconds for _stage, seconds in upward)
        if whole <= 0:  # a caller with no time of its own: its first stage takes it all
            shares.append((upward[0][0], part))
            continue
        shares += [(stage, part * seconds / whole) for stage, seconds in upward]
    return shares


def print_profile(directory: Path) -> None:
    import pstats

    for prof in sorted(directory.glob("*.prof")):
        stats = pstats.Stats(str(prof))
        entries = stats.stats  # type: ignore[attr-defined]
        total = sum(entry[2] for entry in entries.values())
        if total < 0.05:  # idle threads: nothing to say
            continue
        by_stage: dict[str, float] = {}
        for key, entry in entries.items():
            for stage, seconds in stage_shares(entries, key, entry):
                by_stage[stage] = by_stage.get(stage, 0.0) + seconds
        print(f"\n{prof.stem}: {total:.2f} s (profiled; read the shares)")
        for stage, seconds in sorted(by_stage.items(), key=lambda kv: -kv[1]):
            print(f"  {stage:<38} {seconds / total:>6.1%}")
        print("  top functions by own time:")
        top = sorted(entries.items(), key=lambda kv: -kv[1][2])[:12]
        for (path, line, name), entry in top:
            where = f"{Path(path).name}:{line}({name})" if line else name
            print(f"    {entry[2] / total:>6.1%} {entry[1]:>9} calls  {where[:100]}")


# ---- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # The first steps are Flower's (it keeps up with a few thousand events/s), the last ones
    # the recorder's goals: 20,000 events/s into SQLite, 30,000 into PostgreSQL.
    harness.add_ladder_options(parser, rates="2500,5000,7500,15000,20000,30000", seconds=10.0)
    parser.set_defaults(settle=30.0)
    parser.add_argument("--postgres", action="store_true", help="also into PostgreSQL")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite ladder")
    parser.add_argument("--threads", action="store_true", help="split its CPU by thread")
    parser.add_argument("--profile", type=Path, help="cProfile every recorder thread into DIR")
    add_clock_option(parser, "--profile-clock")
    parser.add_argument("--warm-up", type=int, default=2000, help="events before the ladder")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    kinds = [*([] if args.no_sqlite else ["sqlite"]), *(["postgresql"] if args.postgres else [])]

    cores, pin = harness.cores_and_pinning(args.no_pin, "recorder and Flower")
    with harness.redis_run("bench-recorder-") as (workdir, port):
        url = f"redis://127.0.0.1:{port}/0"
        for kind in kinds:
            wrap: list[str] | None = [] if args.threads else None
            if args.profile:
                profile = args.profile / kind
                wrap = ["--profile", str(profile), "--clock", args.profile_clock]
            with database(kind, workdir) as db:
                print(f"\n== recorder into {kind} ({db.url.split('@')[-1]}) ==")
                consumers: list[harness.Consumer] = [
                    recorder(url, db, workdir, cores[0] if pin else None, args.workers, wrap)
                ]
                if not args.no_flower:
                    consumers.append(harness.flower(url, workdir, cores[1] if pin else None))
                # The same stream for every database, so their numbers compare.
                stream = Stream(workers=args.workers, task_names=args.task_names)
                harness.run_ladder(
                    args, rates, port, consumers, stream, ours="recorder", warm_up=args.warm_up
                )
            if args.profile:
                print_profile(args.profile / kind)


if __name__ == "__main__":
    main()
