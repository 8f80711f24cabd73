"""A real ``fleetops exporter`` process for tests, and a reader of its /metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from fleetops.fleet.spec import free_port
from tests.helpers import exited, wait_for
from tests.servers import REPO

Samples = dict[tuple[str, frozenset], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, /, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def total(samples: Samples, name: str, /, **labels: str) -> float:
    """Sum of every sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


@dataclass
class ExporterProcess:
    broker_url: str
    log_path: Path
    args: tuple[str, ...] = ()
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ExporterProcess:
        self.port = self.port or free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETOPS_")}
        env["PYTHONUNBUFFERED"] = "1"
        argv = [
            sys.executable, "-m", "fleetops", "exporter", "--broker-url", self.broker_url,
            "--host", "127.0.0.1", "--port", str(self.port), "--poll-interval", "0.5",
            *self.args,
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        wait_for(self._serving, timeout=60, message="exporter serving /metrics")
        return self

    def _serving(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise exited("exporter", self.process.returncode, self.log())
        return httpx.get(f"{self.url}/metrics", timeout=5).status_code == 200

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> Samples:
        response = httpx.get(f"{self.url}/metrics", timeout=10)
        response.raise_for_status()
        return parse(response.text)

    def healthz(self) -> int:
        return httpx.get(f"{self.url}/healthz", timeout=10).status_code

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
