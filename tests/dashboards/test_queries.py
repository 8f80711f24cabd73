"""Every panel query and template-variable query of every dashboard, run against a REAL
Prometheus scraping a real fleet: Redis, a Celery worker, Beat, the fleetops exporter, Flower
and the history recorder. Variables take the values their own label_values() queries return
(all of them, as a multi-select), $__rate_interval becomes a window covering the whole run;
every query must return at least one number."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pytest
from celery import Celery

from alerts.fleet import host_port
from exporters.history.fleet import processes as recorder_specs
from exporters.metrics.fleet import processes as exporter_specs
from fleetops.fleet.spec import FleetContext
from tests.dashboards.prometheus_server import PrometheusServer, has_number
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


@pytest.fixture
def scraped_fleet(
    fleet_env: dict[str, str],
    processes: Processes,
    start_worker: Callable[..., CeleryProcess],
    start_beat: Callable[..., CeleryProcess],
) -> PrometheusServer:
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
    prometheus = PrometheusServer(
        processes,
        {jobs[spec.name]: host_port(spec.url or "") for spec in specs},
        rule_files=[rules],
    ).start()
    # Only maintenance is consumed: reminders sent by Beat pile up as a real backlog.
    start_worker(queues="maintenance", name="dash-worker", concurrency=2)
    start_beat()
    _drive_traffic(fleet_env["FLEETOPS_BROKER_URL"])
    return prometheus


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


def _resolve_variables(prometheus: PrometheusServer, dashboard: dict[str, Any]) -> dict[str, str]:
    """Each variable set to every value its label_values() query returns, in order, as
    Grafana formats a multi-select for Prometheus: (a|b|c)."""
    values: dict[str, str] = {}
    for variable in query_variables(dashboard):
        found = prometheus.label_values(_substitute(variable["query"], values))
        if not found:
            return values | {variable["name"]: ""}
        values[variable["name"]] = "(" + "|".join(found) + ")"
    return values


def _substitute(expr: str, values: dict[str, str]) -> str:
    expr = expr.replace("$__rate_interval", RATE_WINDOW)
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${name}", values[name])
    return expr


def _missing(prometheus: PrometheusServer, dashboards: dict[str, dict[str, Any]]) -> list[str]:
    missing = []
    for name, dashboard in dashboards.items():
        values = _resolve_variables(prometheus, dashboard)
        for variable, value in values.items():
            if not value:
                missing.append(f"{name}: variable ${variable} has no values")
        for panel in panels(dashboard):
            for target in panel["targets"]:
                expr = _substitute(target["expr"], values)
                try:
                    if not has_number(prometheus.query(expr)):
                        missing.append(f"{name}/{panel['title']} [{target['refId']}]: {expr}")
                except ValueError as exc:
                    missing.append(f"{name}/{panel['title']}: {exc}: {expr}")
    return missing


def test_every_query_returns_data(scraped_fleet: PrometheusServer) -> None:
    dashboards = built_json()
    last: list[str] = []

    def all_answer() -> bool:
        last[:] = _missing(scraped_fleet, dashboards)
        return not last

    try:
        wait_for(all_answer, timeout=120, interval=2, message="every dashboard query to answer")
    except TimeoutError:
        pytest.fail("queries without data after 120 s:\n  " + "\n  ".join(last))
