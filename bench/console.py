"""Benchmark: how fast the console's pages render with a big history and a big fleet.

Targets (issue 6): with one million task records, the Tasks search and the Failures page
render in under 1 s; the Overview in under 0.5 s with 50 queues and 200 workers.

What runs for real: the SQLite history store (migrated by the recorder's own migrations, filled
with synthetic rows), Prometheus (/usr/bin/prometheus) and Alertmanager
(/usr/bin/prometheus-alertmanager), and each page, run by Streamlit's AppTest in this process.
The one stand-in: a small HTTP server serving exporter-format /metrics for 50 queues and 200
workers, because running 200 real workers on this machine is not possible; Prometheus scrapes
it like the real exporter.

Each page is compared with the bare queries it makes (same run), so the ratio shows what the
console adds on top of its sources.

    uv run --frozen python bench/console.py            # 1,000,000 rows (filled once, reused)
    uv run --frozen python bench/console.py --rows 100000 --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from console import metrics  # noqa: E402
from console.sources.alertmanager import Alertmanager  # noqa: E402
from console.sources.prometheus import Prometheus  # noqa: E402
from exporters.history import migrate, queries  # noqa: E402
from exporters.history.database import create_history_engine  # noqa: E402
from exporters.history.schema import tasks  # noqa: E402
from fleetops.breaking_points import current  # noqa: E402
from fleetops.fleet.spec import free_port  # noqa: E402

PAGES = REPO / "console" / "views"
NAMES = [f"bench.task_{n:02d}" for n in range(20)]
EXCEPTIONS = ["ValueError", "KeyError", "TimeoutError", "PermanentError", "OSError"]
FAILURE_RATIO = 0.02


COLUMNS = ["task_id", "name", "state", "queue", "worker", "retries", "args", "kwargs",
           "exception_type", "exception", "runtime", "sent_at", "received_at", "started_at",
           "succeeded_at", "failed_at", "timestamp", "state_class", "state_ts",
           "state_rank"]  # fmt: skip


def synthetic_rows(rows: int, queues: int, workers: int) -> Iterator[tuple]:
    rng = random.Random(6)
    now = time.time()
    for index in range(rows):
        done = now - rng.random() * 86_000  # all within the default 24 h window
        sent = done - rng.random() * 5
        failed = rng.random() < FAILURE_RATIO
        exception = rng.choice(EXCEPTIONS) if failed else None
        yield (
            f"{index:08d}-{rng.getrandbits(64):016x}", rng.choice(NAMES),
            "FAILURE" if failed else "SUCCESS", f"queue-{rng.randrange(queues):02d}",
            f"worker-{rng.randrange(workers):03d}@bench", 0,
            f"('image-{index}',)", "{}", exception,
            f"{exception}: bench failure {index}" if failed else None,
            done - sent, sent, sent + 0.1, sent + 0.2,
            None if failed else done, done if failed else None, done, 3, done, 1,
        )  # fmt: skip


def fill(url: str, rows: int, queues: int, workers: int) -> None:
    engine = create_history_engine(url)
    migrate.upgrade(engine)
    with engine.connect() as connection:
        present = connection.execute(
            tasks.select().with_only_columns(tasks.c.task_id).limit(rows)
        ).all()
    if len(present) >= rows:
        print(f"history: reusing {len(present):,} rows in {engine.url}")
        return
    print(f"history: inserting {rows:,} synthetic rows into {engine.dialect.name} ...", flush=True)
    started = time.perf_counter()
    raw = engine.raw_connection()
    try:
        if engine.dialect.name == "postgresql":
            copy_sql = f"COPY {tasks.name} ({', '.join(COLUMNS)}) FROM STDIN"
            with raw.driver_connection.cursor() as cursor, cursor.copy(copy_sql) as copy:
                for row in synthetic_rows(rows, queues, workers):
                    copy.write_row(row)
            raw.commit()
        else:
            placeholders = ", ".join("?" for _ in COLUMNS)
            sql = f"INSERT INTO {tasks.name} ({', '.join(COLUMNS)}) VALUES ({placeholders})"
            cursor = raw.cursor()
            batch = []
            for row in synthetic_rows(rows, queues, workers):
                batch.append(row)
                if len(batch) == 50_000:
                    cursor.executemany(sql, batch)
                    raw.commit()
                    batch.clear()
            cursor.executemany(sql, batch)
            raw.commit()
        raw.cursor().execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
        engine.dispose()
    print(f"history: filled in {time.perf_counter() - started:.0f} s", flush=True)


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A throwaway PostgreSQL database (the test suite's helper: the machine's server or a
    cluster of its own)."""
    from tests import postgres

    with postgres.admin_dsn() as admin:
        name, url = postgres.create_database(admin)
        try:
            yield url
        finally:
            postgres.drop_database(admin, name)


def exporter_text(queues: int, workers: int) -> bytes:
    rng = random.Random(7)
    lines = []
    for q in range(queues):
        label = f'queue_name="queue-{q:02d}"'
        depth = rng.randrange(0, 12_000)
        arrival, completion = rng.uniform(0, 50), rng.uniform(0, 50)
        lines += [
            f"celery_queue_length{{{label}}} {depth}",
            f"fleetops_queue_arrival_rate{{{label}}} {arrival}",
            f"fleetops_queue_completion_rate{{{label}}} {completion}",
            f"fleetops_queue_drain_seconds{{{label}}} "
            + (f"{depth / (completion - arrival)}" if completion > arrival else "+Inf"),
            f"celery_active_consumer_count{{{label}}} {workers // queues}",
        ]
        for le in ("60.0", "300.0", "900.0", "1800.0", "+Inf"):
            lines.append(f'fleetops_task_latency_seconds_bucket{{name="t",{label},le="{le}"}} 1')
    for w in range(workers):
        host = f'hostname="worker-{w:03d}@bench"'
        lines += [
            f"celery_worker_up{{{host}}} {1 if w % 40 else 0}",
            f"fleetops_worker_memory_percent{{{host}}} {rng.uniform(20, 95)}",
            f"fleetops_worker_heartbeat_age_seconds{{{host}}} {rng.uniform(0, 3)}",
            f"celery_worker_tasks_active{{{host}}} {rng.randrange(0, 4)}",
            f"fleetops_worker_processed_total{{{host}}} {rng.randrange(0, 10**6)}",
            f"fleetops_worker_pool_size{{{host}}} 4",
        ]
    return ("\n".join(lines) + "\n").encode()


@contextlib.contextmanager
def standin_exporter(body: bytes) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def wait(predicate: Callable[[], object], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


@contextlib.contextmanager
def monitoring(directory: Path, target: str) -> Iterator[tuple[str, str]]:
    prom_port, am_port = free_port(), free_port()
    config = directory / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(REPO / "alerts" / "prometheus_rules.yaml")],
        "scrape_configs": [{"job_name": "fleetops-exporter",
                            "static_configs": [{"targets": [target]}]}],
    }))  # fmt: skip
    am_config = directory / "alertmanager.yml"
    am_config.write_text(yaml.safe_dump({"route": {"receiver": "x"}, "receivers": [{"name": "x"}]}))
    log = (directory / "monitoring.log").open("ab")
    processes = [
        subprocess.Popen([shutil.which("prometheus") or "/usr/bin/prometheus",
                          f"--config.file={config}", f"--storage.tsdb.path={directory / 'tsdb'}",
                          f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=log, stderr=log),
        subprocess.Popen(["/usr/bin/prometheus-alertmanager", f"--config.file={am_config}",
                          f"--storage.path={directory / 'am'}",
                          f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
                         stdout=log, stderr=log),
    ]  # fmt: skip
    try:
        yield f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{am_port}"
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)


def time_page(name: str, repeat: int, prepare: Callable | None = None) -> float:
    """Median time of a rerun of one page, as when a user searches or refreshes.

    One AppTest per page: a new AppTest scans every installed package for components (about
    0.6 s here), which a real server does once when it starts, not per page view."""
    import logging

    from streamlit.testing.v1 import AppTest

    # AppTest runs pages outside a server, and Streamlit warns about that on every run.
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").setLevel(
        logging.ERROR
    )
    app = AppTest.from_file(str(PAGES / f"page_{name}.py"), default_timeout=120)
    app.run()  # warm-up: imports, connections; not counted
    if prepare is not None:
        prepare(app)
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        if prepare is not None:
            app.button(key="search_submit").click().run()
        else:
            app.run()
        samples.append(time.perf_counter() - began)
        if app.exception or app.error:
            raise RuntimeError(f"{name}: {[e.value for e in [*app.exception, *app.error]]}")
    return statistics.median(samples)


def time_call(call: Callable[[], object], repeat: int) -> float:
    call()
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queues", type=int, default=50)
    parser.add_argument("--workers", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database", type=Path, default=None,
                        help="SQLite file (default bench/results/console-<rows>.db)")  # fmt: skip
    parser.add_argument("--postgres", action="store_true",
                        help="a throwaway PostgreSQL database instead of SQLite")  # fmt: skip
    options = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if options.postgres:
            url = stack.enter_context(postgres_database())
        else:
            results = REPO / "bench" / "results"
            results.mkdir(parents=True, exist_ok=True)
            database = options.database or results / f"console-{options.rows}.db"
            url = f"sqlite:///{database.resolve()}"
        fill(url, options.rows, options.queues, options.workers)
        measure(options, url)


def measure(options: argparse.Namespace, url: str) -> None:

    directory = Path(tempfile.mkdtemp(prefix="console-bench-"))
    os.environ.update(FLEETOPS_HISTORY_DATABASE_URL=url, FLEETOPS_DATA_DIR=str(directory))
    rows: list[tuple[str, float, float, float]] = []
    engine = create_history_engine(url)
    searches: dict[str, tuple[Callable, queries.TaskFilter]] = {
        "Tasks: newest, no filter": (lambda app: None, queries.TaskFilter(since="24h")),
        "Tasks: name + state": (
            lambda app: (app.text_input(key="f_name").input(NAMES[3]),
                         app.selectbox(key="f_state").select("FAILURE")),
            queries.TaskFilter(name=NAMES[3], state="FAILURE", since="24h"),
        ),
        "Tasks: exception class": (
            lambda app: app.text_input(key="f_exception").input("TimeoutError"),
            queries.TaskFilter(exception="TimeoutError", since="24h"),
        ),
        "Tasks: argument text": (
            lambda app: app.text_input(key="f_text").input("image-4242"),
            queries.TaskFilter(text="image-4242", since="24h"),
        ),
    }  # fmt: skip
    for label, (prepare, filters) in searches.items():
        page = time_page("tasks", options.repeat, prepare)

        def raw(filters: queries.TaskFilter = filters) -> None:
            queries.search_tasks(engine, filters, limit=200)
            queries.count_tasks(engine, filters)

        rows.append((label, page, time_call(raw, options.repeat), 1.0))
    page = time_page("failures", options.repeat)
    bare = time_call(lambda: queries.failures(engine, since="24h", limit=500), options.repeat)
    rows.append(("Failures (24 h)", page, bare, 1.0))
    engine.dispose()

    body = exporter_text(options.queues, options.workers)
    with standin_exporter(body) as target, monitoring(directory, target) as (prom, am):
        os.environ.update(FLEETOPS_PROMETHEUS_URL=prom, FLEETOPS_ALERTMANAGER_URL=am)
        client, alertmanager = Prometheus(prom), Alertmanager(am)
        wait(lambda: len(client.query("fleetops_worker_pool_size")) == options.workers, "scrape")
        wait(lambda: httpx.get(f"{am}/-/ready").status_code == 200, "alertmanager")
        points = current()

        def bare_overview() -> None:
            metrics.queue_states(client, points)
            metrics.worker_states(client, points)
            alertmanager.alerts()

        page = time_page("overview", options.repeat)
        label = f"Overview ({options.queues} queues, {options.workers} workers)"
        rows.append((label, page, time_call(bare_overview, options.repeat), 0.5))
    shutil.rmtree(directory, ignore_errors=True)

    store = url.split(":", 1)[0].split("+", 1)[0]
    runs = f"median of {options.repeat} reruns after a warm-up"
    print(f"\n{options.rows:,} task records in {store}; {runs}\n")
    print(f"{'page':<44}{'page s':>9}{'queries s':>11}{'page/queries':>14}{'target s':>10}  ok")
    for label, page_s, bare_s, target in rows:
        ok = "yes" if page_s < target else "NO"
        ratio = page_s / bare_s if bare_s else float("nan")
        print(f"{label:<44}{page_s:>9.3f}{bare_s:>11.3f}{ratio:>14.1f}{target:>10.1f}  {ok}")


if __name__ == "__main__":
    main()
