"""Every panel query and template-variable query of every dashboard, run against a REAL
Prometheus scraping a real fleet: Redis, a Celery worker, Beat, the fleetops exporter, Flower
and the history recorder. Variables take the values their own label_values() queries return
(all of them, as a multi-select), $__rate_interval becomes a window covering the whole run;
every query must return at least one number."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import Celery

from fleetops.fleet.spec import free_port
from tests.dashboards.prometheus_server import PrometheusServer, has_number
from tests.dashboards.walk import built_json, panels, query_variables
from tests.helpers import wait_for
from tests.servers import REPO, CeleryProcess, RedisServer

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


def _child_env(fleet_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETOPS_")}
    return env | fleet_env | {"PYTHONUNBUFFERED": "1"}


def _serve(argv: list[str], env: dict[str, str], log: Path, metrics_url: str) -> subprocess.Popen:
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def serving() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{argv[:4]} exited:\n{log.read_text()[-3000:]}")
        return httpx.get(metrics_url, timeout=2).status_code == 200

    wait_for(serving, timeout=60, message=f"{metrics_url} serving")
    return process


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def scraped_fleet(
    redis_server: RedisServer,
    fleet_env: dict[str, str],
    start_worker: Callable[..., CeleryProcess],
    start_beat: Callable[..., CeleryProcess],
    tmp_path: Path,
) -> Iterator[PrometheusServer]:
    if not _exporter_available():
        pytest.skip("exporters.metrics.cli (`fleetops exporter`) is not importable yet")
    env = _child_env(fleet_env)
    exporter_port, flower_port, recorder_port = free_port(), free_port(), free_port()
    exporter = _serve(
        [sys.executable, "-m", "fleetops", "exporter", "--broker-url", redis_server.url,
         "--host", "127.0.0.1", "--port", str(exporter_port)],
        env, tmp_path / "exporter.log", f"http://127.0.0.1:{exporter_port}/metrics",
    )  # fmt: skip
    flower = _serve(
        [sys.executable, "-m", "celery", "-A", "workers.app", "flower",
         f"--port={flower_port}", "--address=127.0.0.1", f"--broker={redis_server.url}"],
        env, tmp_path / "flower.log", f"http://127.0.0.1:{flower_port}/metrics",
    )  # fmt: skip
    recorder = _serve(
        [sys.executable, "-m", "fleetops", "recorder",
         "--database-url", f"sqlite:///{tmp_path / 'history.db'}"],
        env | {"FLEETOPS_HISTORY_METRICS_PORT": str(recorder_port)},
        tmp_path / "recorder.log", f"http://127.0.0.1:{recorder_port}/metrics",
    )  # fmt: skip
    rules = tmp_path / "watchdog.rules.yml"
    rules.write_text(WATCHDOG_RULES)
    prometheus = PrometheusServer(
        tmp_path,
        {
            EXPORTER_JOB: f"127.0.0.1:{exporter_port}",
            FLOWER_JOB: f"127.0.0.1:{flower_port}",
            RECORDER_JOB: f"127.0.0.1:{recorder_port}",
        },
        rule_files=[rules],
    ).start()
    try:
        # Only maintenance is consumed: reminders sent by Beat pile up as a real backlog.
        start_worker(queues="maintenance", name="dash-worker", concurrency=2)
        start_beat()
        _drive_traffic(redis_server.url)
        yield prometheus
    finally:
        prometheus.stop()
        _stop(recorder)
        _stop(flower)
        _stop(exporter)


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
