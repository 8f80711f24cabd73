"""A real Prometheus (/usr/bin/prometheus) on a free loopback port, scraping given targets
every second, for tests that run dashboard queries; optionally remote-writing everything to a
real VictoriaMetrics (/usr/bin/victoria-metrics), which answers the same PromQL HTTP API."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from alerts.fleet import prometheus_spec
from alerts.prometheus import remote_write
from alerts.stack import StackFiles
from fleetops.fleet.spec import ProcessSpec, free_port, http_ready
from tests.processes import Processes

LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)$")


class PromQLApi:
    """The PromQL HTTP API Prometheus and VictoriaMetrics both serve, as the tests read it."""

    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, expr: str) -> list[dict]:
        """Instant query at now; raises on a PromQL error."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise ValueError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]["result"]

    def label_values(self, variable_query: str) -> list[str]:
        """What Grafana's label_values(selector, label) returns, through the series API."""
        match = LABEL_VALUES.match(variable_query.strip())
        if not match:
            raise ValueError(f"not a label_values() query: {variable_query}")
        label, selector = match.group("label"), match.group("selector")
        if selector is None:
            response = httpx.get(f"{self.url}/api/v1/label/{label}/values", timeout=10)
            return sorted(response.json()["data"])
        response = httpx.get(
            f"{self.url}/api/v1/series",
            params={"match[]": selector, "start": time.time() - 3600},
            timeout=10,
        )
        body = response.json()
        if body.get("status") != "success":
            raise ValueError(f"{body.get('errorType')}: {body.get('error')}")
        return sorted({series[label] for series in body["data"] if label in series})


@dataclass
class VictoriaMetricsServer(PromQLApi):
    """A single-node VictoriaMetrics that a Prometheus remote-writes to."""

    processes: Processes
    port: int = field(default_factory=free_port)

    @property
    def write_url(self) -> str:
        return f"{self.url}/api/v1/write"

    def start(self) -> VictoriaMetricsServer:
        data = self.processes.run_dir / "victoria-metrics"
        argv = [
            "/usr/bin/victoria-metrics",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={data}",
            "-retentionPeriod=1d",
            # A sample is visible once written (default: 30 s later), as in Prometheus; and no
            # response cache, which would hide the samples of a run only seconds old.
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-memory.allowedPercent=10",
            "-loggerLevel=WARN",
        ]
        spec = ProcessSpec("victoria-metrics", argv, ready=http_ready(f"{self.url}/health"))
        self.processes.start(spec)
        return self


@dataclass
class PrometheusServer(PromQLApi):
    processes: Processes
    targets: dict[str, str]  # job -> host:port
    rule_files: list[Path] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    # Also send every sample to this store, as the shipped option does (alerts/prometheus.py).
    remote_write_url: str = ""

    def start(self) -> PrometheusServer:
        config: dict = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]}
                for job, target in self.targets.items()
            ],
        }
        if self.remote_write_url:
            # Send each batch within a second (default 5 s): the test waits for the store.
            config["remote_write"] = [
                {**target, "queue_config": {"batch_send_deadline": "1s"}}
                for target in remote_write(self.remote_write_url)
            ]
        directory = self.processes.run_dir / "prometheus"
        directory.mkdir()
        config_file = directory / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        # The fleet's Prometheus argv and probe, with this configuration: no Alertmanager or
        # pager beside it.
        files = StackFiles(config_file, directory / "data", Path(), Path(), Path())
        self.processes.start(prometheus_spec(files, self.port))
        return self


def has_number(result: list[dict]) -> bool:
    """At least one sample that is a number (NaN means nothing to show)."""
    return any(not math.isnan(float(series["value"][1])) for series in result)
