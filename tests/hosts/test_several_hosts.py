"""fleetops on two hosts: a worker host (one worker, Beat) and a server host (Redis, exporter,
recorder on SQLite, Prometheus, console), each a network namespace of its own joined by a veth
pair (tests/hosts/netns.py). Every process is the fleet's own ProcessSpec, built by the
component's fleet.py for its host's address and run with an ``ip netns exec`` prefix.

Nothing can lean on a shared host: the parts listen on the server's link address only (nothing
answers on the server's loopback), the worker host has a data directory and a database of its
own and is handed no path of the server's, and the test reaches the worker host only through
the broker. Then the link is cut: the exporter must say the worker is down, and once the link
is back the worker is up again, tasks flow again, and the history recorded before is all there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import create_engine, select

from alerts import fleet as alerts_fleet
from console import fleet as console_fleet
from exporters.history import fleet as history_fleet
from exporters.history.schema import tasks
from exporters.metrics import fleet as metrics_fleet
from fleetops.fleet import broker
from fleetops.fleet.spec import FleetContext, ProcessSpec
from fleetops.settings import ENV_PREFIX
from tests.exporter.process import Samples, parse, total
from tests.helpers import wait_for
from tests.hosts import netns
from tests.processes import Child, Processes, processes_in
from workers import fleet as workers_fleet

REASON = netns.not_permitted()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

# What Beat sends every second from the worker host and the worker runs there.
TASK = "reminders.send_due_soon"
# Celery sends a heartbeat every 2 s: down after 3 s without one, in the exporter's words.
WORKER_TIMEOUT = 3
# What the worker logs each time it connects to the broker.
CONNECTED = "INFO/MainProcess] Connected to redis://"


@dataclass
class TwoHosts:
    network: netns.Network
    server: Processes
    worker: Processes
    # The server's parts by spec name.
    parts: dict[str, Child]
    endpoints: dict[str, str]
    node: str
    history_url: str

    def children(self) -> list[Child]:
        return [*self.server.children, *self.worker.children]

    def alive(self) -> bool:
        """True while every process runs; ProcessExited with its log once one has died."""
        return all(child.alive() for child in self.children())

    def get(self, endpoint: str, path: str) -> httpx.Response:
        base = self.endpoints[endpoint]
        base = base if "//" in base else f"http://{base}"
        return httpx.get(base + path, timeout=5)

    def metrics(self) -> Samples:
        response = self.get("exporter", "/metrics")
        response.raise_for_status()
        return parse(response.text)

    def worker_up(self) -> float | None:
        """The worker's celery_worker_up, None while there is none; any other labels (an
        ``app``) allowed."""
        wanted = ("hostname", self.node)
        samples = self.metrics().items()
        found = [v for (n, ls), v in samples if n == "celery_worker_up" and wanted in ls]
        assert len(found) <= 1, found
        return found[0] if found else None

    def succeeded(self) -> float:
        return total(self.metrics(), "celery_task_succeeded_total", name=TASK, hostname=self.node)

    def recorded(self) -> set[str]:
        """Ids of the tasks the recorder has as succeeded on the worker host."""
        engine = create_engine(self.history_url)
        try:
            with engine.connect() as connection:
                query = select(tasks.c.task_id).where(
                    tasks.c.worker == self.node, tasks.c.state == "SUCCESS"
                )
                return set(connection.execute(query).scalars())
        finally:
            engine.dispose()

    def prometheus(self, query: str) -> list[dict]:
        response = self.get("prometheus", f"/api/v1/query?query={query}")
        response.raise_for_status()
        return response.json()["data"]["result"]


def on_host(spec: ProcessSpec, host: netns.Host) -> ProcessSpec:
    return dataclasses.replace(spec, argv=[*host.prefix(), *spec.argv])


def server_specs(ctx: FleetContext) -> list[ProcessSpec]:
    """The server's processes as the fleet assembles them, less the ones this test needs not:
    Flower, the pager and Alertmanager (their endpoints dropped, so nothing points at them)."""
    specs = broker.processes(ctx) + metrics_fleet.processes(ctx)
    specs += history_fleet.processes(ctx)
    specs += alerts_fleet.processes(ctx)
    for unused in ("flower", "pager", "alertmanager"):
        ctx.endpoints.pop(unused)
    specs += console_fleet.processes(ctx)
    return [s for s in specs if s.name not in ("flower", "pager", "alertmanager")]


def worker_specs(ctx: FleetContext, node: str) -> list[ProcessSpec]:
    """The fleet's reminder worker and Beat; the worker named after its host (the namespaces
    share the machine's hostname, which ``%h`` would give)."""
    wanted = {"worker-reminders", "beat"}
    specs = [s for s in workers_fleet.processes(ctx) if s.name in wanted]
    assert {s.name for s in specs} == wanted, "the fleet's worker specs changed"
    named = [
        dataclasses.replace(s, argv=[node if a == "reminders@%h" else a for a in s.argv])
        for s in specs
    ]
    # One worker needs no neighbours: no mingle (a second of waiting at every connect) and no
    # gossip; one pool process is the worker itself. The last of Celery's options wins.
    trimmed = ["-P", "solo", "--without-mingle", "--without-gossip"]
    return [
        dataclasses.replace(s, argv=[*s.argv, *trimmed]) if s.name == "worker-reminders" else s
        for s in named
    ]


def stop_all(processes: Processes) -> None:
    """Every process of a host at once (TERM, KILL after the grace): one after the other, each
    waiting for the last to exit, takes seconds a process."""
    processes.runner.stop(grace=10)
    for child in processes.children:
        child.stopped = True


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoHosts]:
    base = tmp_path_factory.mktemp("hosts")
    with contextlib.ExitStack() as stack:
        network = stack.enter_context(netns.two_hosts())
        # Left in reverse: the worker host's processes stop first, then the server's, then
        # the namespaces go (with anything still inside them).
        server = stack.enter_context(processes_in(base / "server"))
        worker = stack.enter_context(processes_in(base / "worker"))

        server_env = {
            ENV_PREFIX + "DATA_DIR": str(base / "server" / "data"),
            ENV_PREFIX + "EXPORTER_WORKER_TIMEOUT": str(WORKER_TIMEOUT),
            ENV_PREFIX + "EXPORTER_POLL_INTERVAL": "0.5",
            ENV_PREFIX + "PROMETHEUS_SCRAPE_INTERVAL": "1s",
            ENV_PREFIX + "PROMETHEUS_EVALUATION_INTERVAL": "1s",
        }
        server_ctx = FleetContext(base / "server", server_env, host=network.server.address)
        specs = server_specs(server_ctx)
        [redis] = [s for s in specs if s.name == "redis"]
        parts = {"redis": server.start(on_host(redis, network.server), server_ctx.env)}

        node = f"reminders@{network.worker.namespace}"
        worker_env = {
            # The one thing the worker host is handed: the broker's address.
            ENV_PREFIX + "BROKER_URL": server_ctx.env[ENV_PREFIX + "BROKER_URL"],
            ENV_PREFIX + "DATA_DIR": str(base / "worker" / "data"),
            ENV_PREFIX + "LOAD_SCENARIO": "none",
            ENV_PREFIX + "REMINDER_INTERVAL_SECONDS": "1",
            ENV_PREFIX + "TELEMETRY_INTERVAL": "1",
        }
        worker_ctx = FleetContext(base / "worker", worker_env, host=network.worker.address)
        # Side by side, slow starters first; each then waited for.
        started = [
            worker.start(on_host(spec, network.worker), worker_ctx.env, wait=False)
            for spec in worker_specs(worker_ctx, node)
        ]
        for spec in reversed(specs):
            if spec.name != "redis":
                child = server.start(on_host(spec, network.server), server_ctx.env, wait=False)
                parts[spec.name] = child
                started.append(child)
        stack.callback(stop_all, server)
        stack.callback(stop_all, worker)
        for child in started:
            child.wait_ready()
        yield TwoHosts(
            network,
            server,
            worker,
            parts,
            {**server_ctx.endpoints, "console": parts["console"].spec.url or ""},
            node,
            server_ctx.env[ENV_PREFIX + "HISTORY_DATABASE_URL"],
        )


def listening_on_loopback(host: netns.Host, ports: list[int]) -> list[int]:
    """Which of ``ports`` accept a connection on the host's own 127.0.0.1."""
    probe = (
        "import socket, sys\n"
        "for port in map(int, sys.argv[1:]):\n"
        "    with socket.socket() as s:\n"
        "        s.settimeout(2)\n"
        "        if s.connect_ex(('127.0.0.1', port)) == 0: print(port)\n"
    )
    argv = [*host.prefix(), sys.executable, "-c", probe, *map(str, ports)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    return [int(port) for port in done.stdout.split()]


def test_tasks_from_the_worker_host_reach_every_part_on_the_server(hosts: TwoHosts) -> None:
    def flowed() -> bool:
        return hosts.alive() and hosts.worker_up() == 1 and hosts.succeeded() >= 2

    wait_for(flowed, timeout=30, message=f"{TASK} on {hosts.node} in the exporter's metrics")
    wait_for(lambda: hosts.alive() and hosts.recorded(), message="the recorder's history")

    # Prometheus scraped the exporter at the server's link address.
    def scraped() -> list[dict]:
        return hosts.alive() and hosts.prometheus(
            f'celery_task_succeeded_total{{hostname="{hosts.node}",name="{TASK}"}}'
        )

    wait_for(scraped, message="the worker's tasks in Prometheus")
    targets = hosts.get("prometheus", "/api/v1/targets").json()["data"]["activeTargets"]
    exporter = f"http://{hosts.endpoints['exporter']}/metrics"
    assert hosts.endpoints["exporter"].startswith(hosts.network.server.address + ":")
    assert [t["health"] for t in targets if t["scrapeUrl"] == exporter] == ["up"], targets

    console = hosts.get("console", "/_stcore/health")
    assert console.status_code == 200, console.text

    # Every part listens on the link address only: none answers on the server's loopback.
    addresses = [urlsplit(a if "//" in a else f"//{a}") for a in hosts.endpoints.values()]
    ports = [a.port for a in addresses if a.hostname == hosts.network.server.address]
    assert len(ports) == 5, hosts.endpoints  # broker, exporter, recorder, Prometheus, console
    assert listening_on_loopback(hosts.network.server, ports) == []

    # Each host has its own data: the worker host is handed no path of the server's.
    server_dir = str(hosts.server.run_dir)
    for child in hosts.worker.children:
        leaks = {k: v for k, v in child.env.items() if server_dir in v}
        assert not leaks, f"{child.label} is handed the server's paths: {leaks}"
    assert (hosts.worker.run_dir / "data").is_dir()


def test_a_partition_shows_the_worker_down_and_heals_without_losing_history(
    hosts: TwoHosts,
) -> None:
    wait_for(lambda: hosts.alive() and hosts.worker_up() == 1, message="the worker up")
    recorded = wait_for(lambda: hosts.alive() and hosts.recorded(), message="some history")
    before = hosts.succeeded()
    worker = hosts.worker.children[0]
    assert worker.spec.name == "worker-reminders"
    connects = worker.log().count(CONNECTED)

    hosts.network.partition()
    try:
        hosts.network.drop_connections()
        wait_for(
            lambda: hosts.alive() and hosts.worker_up() == 0,
            timeout=WORKER_TIMEOUT + 15,
            message="the exporter to say the cut-off worker is down",
        )
        # The server itself is fine: its exporter is healthy, only the worker is gone.
        assert hosts.get("exporter", "/healthz").status_code == 200
    finally:
        hosts.network.heal()

    def recovered() -> bool:
        return hosts.alive() and hosts.worker_up() == 1 and hosts.succeeded() > before

    wait_for(recovered, timeout=40, message="the worker back and its tasks flowing again")
    # Back by reconnecting (Celery retries with a growing delay), not by a stalled connection.
    assert worker.log().count(CONNECTED) > connects, worker.log()[-3000:]

    def recorded_since() -> set[str]:
        return hosts.recorded() if hosts.alive() and hosts.recorded() - recorded else set()

    after = wait_for(recorded_since, message="tasks after the partition in the history")
    assert recorded <= after, f"history lost {len(recorded - after)} tasks over the partition"
