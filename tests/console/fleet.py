"""One real fleet shared by the console tests: Redis, a worker, Beat, the exporter, the
history recorder, Prometheus (with the generated recording rules) and Alertmanager."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml
from celery import Celery

from exporters.history.database import create_history_engine
from exporters.history.queries import list_workers
from fleetops.fleet.spec import free_port
from tests.dashboards.prometheus_server import PrometheusServer
from tests.exporter.process import ExporterProcess
from tests.helpers import wait_for
from tests.servers import REPO, CeleryProcess, RedisServer, celery_argv, worker_ready
from workers.client import client_app

WORK_QUEUES = "maintenance,reminders"  # "images" has no consumer: its depth stays exact


@dataclass
class Process:
    """A plain child process with its log file, stopped with its whole process group."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None

    def start(self) -> Process:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return self

    def alive(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            log = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} exited:\n{log}")
        return True

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


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


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETOPS_")}
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _alertmanager(directory: Path) -> tuple[Process, str]:
    (directory / "am-data").mkdir()
    config = directory / "alertmanager.yml"
    # Routing is the alerts component's concern; here Alertmanager only stores alerts.
    config.write_text(
        yaml.safe_dump({"route": {"receiver": "blackhole"}, "receivers": [{"name": "blackhole"}]})
    )
    port = free_port()
    argv = [
        "/usr/bin/prometheus-alertmanager", f"--config.file={config}",
        f"--storage.path={directory / 'am-data'}", f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]  # fmt: skip
    process = Process("alertmanager", argv, child_env({}), directory / "alertmanager.log").start()
    url = f"http://127.0.0.1:{port}"
    wait_for(
        lambda: process.alive() and httpx.get(f"{url}/-/ready").status_code == 200,
        timeout=60,
        message="alertmanager ready",
    )
    return process, url


@contextlib.contextmanager
def running_fleet(directory: Path) -> Iterator[Fleet]:
    data = directory / "data"
    data.mkdir()
    started: list = []
    try:
        redis = RedisServer(port=free_port(), directory=directory)
        redis.start()
        started.append(redis)
        history_url = f"sqlite:///{data / 'history.db'}"
        fleet_env = {
            "FLEETOPS_BROKER_URL": redis.url,
            "FLEETOPS_DATA_DIR": str(data),
            "FLEETOPS_DATABASE_URL": f"sqlite:///{data / 'fleetops.db'}",
            "FLEETOPS_TELEMETRY_INTERVAL": "1",
            "FLEETOPS_REMINDER_INTERVAL_SECONDS": "2",
        }
        recorder_port = free_port()
        recorder_metrics = f"http://127.0.0.1:{recorder_port}/metrics"
        recorder = Process(
            "recorder",
            [sys.executable, "-m", "fleetops", "recorder"],
            child_env({**fleet_env, "FLEETOPS_HISTORY_DATABASE_URL": history_url,
                  "FLEETOPS_HISTORY_METRICS_PORT": str(recorder_port),
                  "FLEETOPS_HISTORY_FLUSH_INTERVAL": "0.1"}),
            directory / "recorder.log",
        ).start()  # fmt: skip
        started.append(recorder)
        exporter = ExporterProcess(redis.url, directory / "exporter.log").start()
        started.append(exporter)
        node = "console-worker@127.0.0.1"
        worker = CeleryProcess(
            "worker", node,
            celery_argv("worker", "-Q", WORK_QUEUES, "-n", node, "-c", "2", "-P", "prefork",
                        "--loglevel=INFO", "-E", "--without-mingle", "--without-gossip"),
            child_env(fleet_env), directory / "worker.log",
        ).start()  # fmt: skip
        started.append(worker)
        beat = CeleryProcess(
            "beat", "beat", celery_argv("beat", "--loglevel=INFO", "-s", str(directory / "beat")),
            child_env(fleet_env), directory / "beat.log",
        ).start()  # fmt: skip
        started.append(beat)
        prometheus = PrometheusServer(
            directory=directory,
            targets={"fleetops-exporter": f"127.0.0.1:{exporter.port}"},
            rule_files=[REPO / "alerts" / "prometheus_rules.yaml"],
        ).start()
        started.append(prometheus)
        alertmanager, alertmanager_url = _alertmanager(directory)
        started.append(alertmanager)
        wait_for(lambda: worker_ready(worker), timeout=90, message="worker ready")
        wait_for(lambda: "beat: Starting" in beat.log(), timeout=60, message="beat started")
        wait_for(
            lambda: recorder.alive() and httpx.get(recorder_metrics).status_code == 200,
            timeout=60,
            message="recorder serving",
        )
        # Events published before a subscriber listens are lost: wait until both event
        # consumers have seen the worker's heartbeats before any task is sent.
        engine = create_history_engine(history_url)
        wait_for(
            lambda: node in set(list_workers(engine)["hostname"]),
            timeout=60,
            message="recorder saw the worker",
        )
        engine.dispose()
        wait_for(
            lambda: f'hostname="{node}"' in httpx.get(f"{exporter.url}/metrics").text,
            timeout=60,
            message="exporter saw the worker",
        )
        yield Fleet(directory, redis, worker, exporter, prometheus, alertmanager_url, history_url)
    finally:
        for part in reversed(started):
            part.stop()
