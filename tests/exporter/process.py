"""A real ``fleetops exporter`` process for tests, as the fleet starts it, and a reader of its
/metrics."""

from __future__ import annotations

import dataclasses
import shutil
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporters.metrics.fleet import processes as exporter_specs
from fleetops.apps import APP_LABEL, DEFAULT_APP
from fleetops.fleet.spec import FleetContext, ProcessSpec
from fleetops.settings import ENV_PREFIX
from tests.processes import Child, Processes

Samples = dict[tuple[str, frozenset], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def rendered(state: object, *, now: float, wall: float) -> Samples:
    """What the exporter serves for ``state`` with a healthy stream and no queues polled."""
    from exporters.metrics.queues import QueueSnapshot
    from exporters.metrics.render import Extras, Renderer, Thresholds
    from exporters.stream.status import StreamStatus

    extras = Extras(
        status=StreamStatus(connected=True),
        snapshot=QueueSnapshot(ok=True, lengths={}),
        consumers={},
        overflow_dropped=0,
        last_scrape_seconds=0.0,
        thresholds=Thresholds(),
    )
    return parse("".join(Renderer().render(state, extras, now=now, wall=wall)))  # type: ignore[arg-type]


def value(samples: Samples, name: str, /, **labels: str) -> float | None:
    """The sample with exactly these labels. A test of one app need not name it: the exporter
    labels every series ``app="default"`` (the renderer alone adds no app label)."""
    found = samples.get((name, frozenset(labels.items())))
    if found is None and APP_LABEL not in labels:
        found = samples.get((name, frozenset({**labels, APP_LABEL: DEFAULT_APP}.items())))
    return found


def total(samples: Samples, name: str, /, **labels: str) -> float:
    """Sum of every sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def fleet_exporters(broker_url: str, run_dir: Path) -> dict[str, ProcessSpec]:
    """Flower and the exporter by name, with the fleet's own argv, each on a free port."""
    ctx = FleetContext(run_dir, {ENV_PREFIX + "BROKER_URL": broker_url}, any_port=True)
    return {spec.name: spec for spec in exporter_specs(ctx)}


@dataclass
class ExporterProcess:
    child: Child

    @property
    def port(self) -> int:
        port = urlsplit(self.child.spec.url or "").port
        assert port is not None
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.child.log()

    def alive(self) -> bool:
        return self.child.alive()

    def metrics_text(self) -> str:
        response = httpx.get(f"{self.url}/metrics", timeout=10)
        response.raise_for_status()
        return response.text

    def metrics(self) -> Samples:
        return parse(self.metrics_text())

    def healthz(self) -> int:
        return httpx.get(f"{self.url}/healthz", timeout=10).status_code

    def stop(self) -> None:
        self.child.stop()


def run_exporter(
    processes: Processes,
    broker_url: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    wait: bool = True,
) -> ExporterProcess:
    """The fleet's exporter polling the broker every 0.5 s (tests wait on queue lengths), with
    ``args`` after the fleet's own."""
    spec = fleet_exporters(broker_url, processes.run_dir)["exporter"]
    # ``env`` is the test's configuration: over the spec's own (which sets FLEETOPS_APPS, empty
    # for the local fleet, so that the shell's does not leak in).
    spec = dataclasses.replace(
        spec,
        argv=[*spec.argv, "--poll-interval", "0.5", *args],
        env={**spec.env, **(env or {})},
    )
    # Killed when the test is over (a test that checks its stop stops it itself): a clean stop
    # costs about a second of a busy machine, in every test that runs one.
    return ExporterProcess(processes.start(spec, env, wait=wait, teardown_signal=signal.SIGKILL))


# promtool check metrics: 0 clean, 3 only its linter's advice about names (the peer's, without
# units), anything else (1: a parse error) is a text Prometheus would not take.
PROMTOOL_ACCEPTED = (0, 3)


def promtool_accepts(text: str) -> None:
    """``text`` parses as Prometheus' text format, by promtool's exit code and its output."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=120
    )
    output = checked.stdout + checked.stderr
    assert checked.returncode in PROMTOOL_ACCEPTED, (checked.returncode, output[-2000:])
    assert b"error while linting" not in output, output[-2000:]
