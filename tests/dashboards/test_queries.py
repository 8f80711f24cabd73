"""Every panel query and template-variable query of every dashboard, run against a REAL
Prometheus scraping a real fleet: Redis, a Celery worker, Beat, the fleetops exporter, Flower
and the history recorder. Variables take the values their own label_values() queries return
(all of them, as a multi-select), $__rate_interval becomes a window covering the whole run;
every query must return at least one number.

The same Prometheus remote-writes everything to a REAL VictoriaMetrics (the shipped
``remote_write_url`` option, docs/dashboards.md), and every dashboard query and every console
page runs against VictoriaMetrics too: no query error, and data wherever Prometheus has some."""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from celery import Celery

from alerts.fleet import host_port
from exporters.history.fleet import processes as recorder_specs
from exporters.metrics.fleet import processes as exporter_specs
from fleetops.fleet.spec import FleetContext
from tests.console.apptest import PAGES, page, run
from tests.dashboards.prometheus_server import (
    PrometheusServer,
    PromQLApi,
    VictoriaMetricsServer,
    has_number,
)
from tests.dashboards.query_log import QueryLog
from tests.dashboards.walk import built_json, panels, query_variables
from tests.helpers import wait_for
from tests.processes import Processes
from tests.servers import CeleryProcess

pytestmark = pytest.mark.slow

EXPORTER_JOB = "fleetops-exporter"
FLOWER_JOB = "flower"
RECORDER_JOB = "fleetops-recorder"
RATE_WINDOW = "5m"  # longer than the test: every rate() sees all the traffic it drove
WATCHDOG_RULES = """groups:
  - name: test-watchdog
    rules:
      - alert: Watchdog
        expr: vector(1)
        labels: {severity: none}
"""


def _exporter_available() -> bool:
    try:
        importlib.import_module("exporters.metrics.cli")
    except ModuleNotFoundError:
        return False
    return True


@dataclass(frozen=True)
class ScrapedFleet:
    prometheus: PrometheusServer
    victoria_metrics: VictoriaMetricsServer
    # What a console needs besides its PromQL endpoint: the broker and the history database.
    console_env: dict[str, str]


@pytest.fixture
def scraped_fleet(
    fleet_env: dict[str, str],
    processes: Processes,
    start_worker: Callable[..., CeleryProcess],
    start_beat: Callable[..., CeleryProcess],
) -> ScrapedFleet:
    if not _exporter_available():
        pytest.skip("exporters.metrics.cli (`fleetops exporter`) is not importable yet")
    # The fleet's own specs, as `fleetops up` builds them, on free ports.
    run_dir = processes.run_dir
    history = f"sqlite:///{run_dir / 'history.db'}"
    ctx = FleetContext(
        run_dir, {**fleet_env, "FLEETOPS_HISTORY_DATABASE_URL": history}, any_port=True
    )
    specs = [*exporter_specs(ctx), *recorder_specs(ctx)]
    for child in [processes.start(spec, ctx.env, wait=False) for spec in specs]:
        child.wait_ready()
    rules = run_dir / "watchdog.rules.yml"
    rules.write_text(WATCHDOG_RULES)
    jobs = {"exporter": EXPORTER_JOB, "flower": FLOWER_JOB, "recorder": RECORDER_JOB}
    # The long-term store first, so that Prometheus's first batch finds it listening.
    victoria_metrics = VictoriaMetricsServer(processes).start()
    prometheus = PrometheusServer(
        processes,
        {jobs[spec.name]: host_port(spec.url or "") for spec in specs},
        rule_files=[rules],
        remote_write_url=victoria_metrics.write_url,
    ).start()
    # Only maintenance is consumed: reminders sent by Beat pile up as a real backlog.
    start_worker(queues="maintenance", name="dash-worker", concurrency=2)
    start_beat()
    _drive_traffic(fleet_env["FLEETOPS_BROKER_URL"])
    console_env = {
        **fleet_env,
        "FLEETOPS_HISTORY_DATABASE_URL": history,
        "FLEETOPS_ALERTMANAGER_URL": "http://127.0.0.1:9",  # none here: a banner, not a query
        "FLEETOPS_CONSOLE_PASSWORD": "correct horse battery staple",
        # The pages' queries are under test, not their speed on a machine shared by many runs.
        "FLEETOPS_CONSOLE_SOURCE_TIMEOUT": "30",
    }
    return ScrapedFleet(prometheus, victoria_metrics, console_env)


def _drive_traffic(broker_url: str) -> None:
    client = Celery("dashboards-test-client", broker=broker_url)
    client.conf.task_send_sent_event = True
    try:
        for index in range(16):
            fail = "ValueError" if index % 4 == 3 else None
            client.send_task(
                "maintenance.probe",
                kwargs={"duration": 0.2, "fail": fail},
                queue="maintenance",
            )
    finally:
        client.close()


def _resolve_variables(store: PromQLApi, dashboard: dict[str, Any]) -> dict[str, str]:
    """Each variable set to every value its label_values() query returns, in order, as
    Grafana formats a multi-select for Prometheus: (a|b|c). The app variable with no value
    (series without the label: one app, an exporter older than the label) is All, as Grafana
    selects it: its all value, ".*"."""
    values: dict[str, str] = {}
    for variable in query_variables(dashboard):
        found = store.label_values(_substitute(variable["query"], values))
        if not found and variable["name"] == "app":
            values["app"] = variable["allValue"]
            continue
        if not found:
            return values | {variable["name"]: ""}
        values[variable["name"]] = "(" + "|".join(found) + ")"
    return values


def _substitute(expr: str, values: dict[str, str]) -> str:
    expr = expr.replace("$__rate_interval", RATE_WINDOW)
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${name}", values[name])
    return expr


def _missing(store: PromQLApi, dashboards: dict[str, dict[str, Any]]) -> list[str]:
    missing = []
    queries: list[tuple[str, str]] = []  # (where, expr)
    for name, dashboard in dashboards.items():
        values = _resolve_variables(store, dashboard)
        for variable, value in values.items():
            if not value:
                missing.append(f"{name}: variable ${variable} has no values")
        queries += [
            (f"{name}/{panel['title']} [{target['refId']}]", _substitute(target["expr"], values))
            for panel in panels(dashboard)
            for target in panel["targets"]
        ]

    def problem(query: tuple[str, str]) -> str | None:
        where, expr = query
        try:
            return None if has_number(store.query(expr)) else f"{where}: {expr}"
        except ValueError as exc:
            return f"{where}: {exc}: {expr}"

    # A few at a time, as Grafana sends a dashboard's queries: the store answers in parallel.
    with ThreadPoolExecutor(max_workers=4) as pool:
        missing += [found for found in pool.map(problem, queries) if found]
    return missing


def _all_answer(store: PromQLApi, what: str, timeout: float) -> None:
    dashboards = built_json()
    last: list[str] = []

    def all_answer() -> bool:
        last[:] = _missing(store, dashboards)
        return not last

    try:
        wait_for(all_answer, timeout=timeout, interval=2, message=f"every query on {what}")
    except TimeoutError:
        pytest.fail(f"queries without data on {what} after {timeout} s:\n  " + "\n  ".join(last))


def _console_pages_on(
    store: PromQLApi, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], list[str]]:
    """Every console page, run as AppTest runs it (in this process) with its Prometheus URL set
    to ``store`` through a QueryLog: the pages' Prometheus error banners, and the PromQL sent."""
    for key in [k for k in os.environ if k.startswith("FLEETOPS_")]:
        monkeypatch.delenv(key)
    log = QueryLog(store.url).start()
    for key, value in {**env, "FLEETOPS_PROMETHEUS_URL": log.url}.items():
        monkeypatch.setenv(key, value)
    errors = []
    seconds: dict[str, float] = {}
    try:
        for path in sorted(PAGES.glob("page_*.py")):
            name = path.stem.removeprefix("page_")
            started = time.monotonic()
            app = run(page(name))
            seconds[name] = time.monotonic() - started
            errors += [f"page {name}: {e.value}" for e in app.error if "Prometheus" in e.value]
    finally:
        log.stop()
    slowest = sorted(seconds.items(), key=lambda item: -item[1])[:5]
    print("console pages, slowest:", ", ".join(f"{name} {s:.1f} s" for name, s in slowest))
    return errors, list(dict.fromkeys(log.queries))


def _compare(expr: str, prometheus: PromQLApi, store: PromQLApi) -> str | None:
    """None when ``store`` answers ``expr`` without error, with data wherever Prometheus has."""
    try:
        answer = store.query(expr)
    except ValueError as exc:
        return f"{exc}: {expr}"
    # Ask Prometheus only about an empty answer: most have data, and each query costs.
    if not has_number(answer) and has_number(prometheus.query(expr)):
        return f"no data (Prometheus has some): {expr}"
    return None


def test_every_query_returns_data_on_prometheus_and_victoria_metrics(
    scraped_fleet: ScrapedFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    _all_answer(scraped_fleet.prometheus, "Prometheus", timeout=120)
    # Prometheus has it all; VictoriaMetrics has it within a remote-write batch or two.
    started = time.monotonic()
    _all_answer(scraped_fleet.victoria_metrics, "VictoriaMetrics", timeout=60)
    dashboards_on_vm = time.monotonic() - started

    prometheus, victoria = scraped_fleet.prometheus, scraped_fleet.victoria_metrics
    page_errors, queries = _console_pages_on(victoria, scraped_fleet.console_env, monkeypatch)
    assert not page_errors, "\n".join(page_errors)
    assert queries, "the console pages sent no PromQL"
    last: list[str] = []

    def same_answers() -> bool:
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = pool.map(lambda query: _compare(query, prometheus, victoria), queries)
            last[:] = [problem for problem in answers if problem]
        return not last

    replay_started = time.monotonic()
    try:
        wait_for(same_answers, timeout=30, interval=2, message="console queries on VM")
    except TimeoutError:
        pytest.fail("console queries on VictoriaMetrics:\n  " + "\n  ".join(last))
    replay = time.monotonic() - replay_started
    print(
        f"VictoriaMetrics: dashboards {dashboards_on_vm:.1f} s, console"
        f" {time.monotonic() - started - dashboards_on_vm:.1f} s (replay {replay:.1f} s),"
        f" {len(queries)} console queries"
    )
