"""One real fleet shared by the console tests: Redis, a worker, Beat, the exporter, the
history recorder, Prometheus (with the generated recording rules) and Alertmanager."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from celery import Celery

from exporters.history.database import create_history_engine
from exporters.history.fleet import processes as recorder_specs
from exporters.history.queries import list_workers
from fleetops.fleet.spec import FleetContext
from tests.alerts.standalone import start_alertmanager
from tests.dashboards.prometheus_server import PrometheusServer
from tests.exporter.process import ExporterProcess, run_exporter
from tests.helpers import wait_for
from tests.processes import REPO, Child, Processes, processes_in
from tests.servers import CeleryProcess, RedisServer, run_beat, run_worker
from workers.client import client_app

WORK_QUEUES = "maintenance,reminders"  # "images" has no consumer: its depth stays exact


@dataclass
class Fleet:
    directory: Path
    redis: RedisServer
    worker: CeleryProcess
    exporter: ExporterProcess
    prometheus: PrometheusServer
    alertmanager_url: str
    history_url: str
    console_password: str = "correct horse battery staple"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def console_env(self) -> dict[str, str]:
        return {
            "FLEETOPS_BROKER_URL": self.redis.url,
            "FLEETOPS_DATA_DIR": str(self.data_dir),
            "FLEETOPS_PROMETHEUS_URL": self.prometheus.url,
            "FLEETOPS_ALERTMANAGER_URL": self.alertmanager_url,
            "FLEETOPS_HISTORY_DATABASE_URL": self.history_url,
            "FLEETOPS_CONSOLE_PASSWORD": self.console_password,
        }

    def client(self) -> Celery:
        app = client_app(self.redis.url, name="console-test-client")
        app.conf.task_send_sent_event = True
        return app

    def prometheus_value(self, expr: str) -> float | None:
        result = self.prometheus.query(expr)
        return float(result[0]["value"][1]) if result else None


# Alertmanager only stores the alerts here: routing is the alerts component's concern.
BLACKHOLE = {"route": {"receiver": "blackhole"}, "receivers": [{"name": "blackhole"}]}


def _recorder(processes: Processes, fleet_env: dict[str, str], history_url: str) -> Child:
    """The fleet's recorder, flushing every 0.1 s so that the history keeps up with the test."""
    ctx = FleetContext(
        processes.run_dir,
        {**fleet_env, "FLEETOPS_HISTORY_DATABASE_URL": history_url,
         "FLEETOPS_HISTORY_FLUSH_INTERVAL": "0.1"},
        any_port=True,
    )  # fmt: skip
    [spec] = recorder_specs(ctx)
    return processes.start(spec, ctx.env, wait=False)


@contextlib.contextmanager
def running_fleet(directory: Path) -> Iterator[Fleet]:
    data = directory / "data"
    data.mkdir()
    with processes_in(directory) as processes:
        redis = RedisServer(processes).start()
        history_url = f"sqlite:///{data / 'history.db'}"
        fleet_env = {
            "FLEETOPS_BROKER_URL": redis.url,
            "FLEETOPS_DATA_DIR": str(data),
            "FLEETOPS_DATABASE_URL": f"sqlite:///{data / 'fleetops.db'}",
            "FLEETOPS_TELEMETRY_INTERVAL": "1",
            "FLEETOPS_REMINDER_INTERVAL_SECONDS": "2",
        }
        # The slow starters come up side by side; each is waited for below.
        recorder = _recorder(processes, fleet_env, history_url)
        exporter = run_exporter(processes, redis.url, wait=False)
        node = "console-worker@127.0.0.1"
        worker = run_worker(processes, node, WORK_QUEUES, fleet_env, wait=False)
        beat = run_beat(processes, directory / "beat", fleet_env, wait=False)
        # Prometheus and Alertmanager start while those come up: Prometheus retries its target
        # until the exporter serves, as in the fleet.
        prometheus = PrometheusServer(
            processes,
            targets={"fleetops-exporter": f"127.0.0.1:{exporter.port}"},
            rule_files=[REPO / "alerts" / "prometheus_rules.yaml"],
        ).start()
        alertmanager_url = start_alertmanager(processes, BLACKHOLE)
        for child in (exporter.child, worker.child, beat.child, recorder):
            child.wait_ready()
        # Events published before a subscriber listens are lost: wait until both event
        # consumers have seen the worker's heartbeats before any task is sent.
        engine = create_history_engine(history_url)
        wait_for(
            lambda: recorder.alive() and node in set(list_workers(engine)["hostname"]),
            timeout=60,
            message="recorder saw the worker",
        )
        engine.dispose()
        wait_for(
            lambda: exporter.alive() and f'hostname="{node}"' in exporter.metrics_text(),
            timeout=60,
            message="exporter saw the worker",
        )
        yield Fleet(directory, redis, worker, exporter, prometheus, alertmanager_url, history_url)
