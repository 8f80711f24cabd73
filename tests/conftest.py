"""Fixtures that start real servers on free loopback ports and stop them afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import postgres, rabbitmq
from tests.helpers import wait_for
from tests.processes import Processes, processes_in
from tests.servers import CeleryProcess, RedisServer, run_beat, run_worker, unique_name


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """The test's processes, in its tmp_path. The fixtures below start theirs here and leave
    the stopping to this one: newest first, so that workers stop before their broker."""
    with processes_in(tmp_path) as started:
        yield started


@pytest.fixture
def redis_server(processes: Processes) -> RedisServer:
    return RedisServer(processes).start()


@pytest.fixture
def fleet_env(redis_server: RedisServer, tmp_path: Path) -> dict[str, str]:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    return {
        "FLEETOPS_BROKER_URL": redis_server.url,
        "FLEETOPS_DATA_DIR": str(data),
        "FLEETOPS_DATABASE_URL": f"sqlite:///{data / 'fleetops.db'}",
        # Tests cannot wait minutes for a retry or for Redis to hand back an unacked task.
        "FLEETOPS_RETRY_BACKOFF_SECONDS": "1",
        "FLEETOPS_RETRY_BACKOFF_MAX_SECONDS": "2",
        "FLEETOPS_BROKER_VISIBILITY_TIMEOUT": "6",
        "FLEETOPS_TELEMETRY_INTERVAL": "1",
        "FLEETOPS_REMINDER_INTERVAL_SECONDS": "2",
    }


@pytest.fixture
def start_worker(fleet_env: dict[str, str], processes: Processes) -> Callable[..., CeleryProcess]:
    def start(
        queues: str = "images",
        name: str | None = None,
        concurrency: int = 2,
        env: dict[str, str] | None = None,
        pool: str = "prefork",
    ) -> CeleryProcess:
        node = f"{name or unique_name('worker')}@127.0.0.1"
        return run_worker(processes, node, queues, {**fleet_env, **(env or {})}, concurrency, pool)

    return start


@pytest.fixture
def start_beat(
    fleet_env: dict[str, str], processes: Processes, tmp_path: Path
) -> Callable[..., CeleryProcess]:
    def start(env: dict[str, str] | None = None) -> CeleryProcess:
        schedule = tmp_path / f"beat-{len(processes.children)}"
        return run_beat(processes, schedule, {**fleet_env, **(env or {})})

    return start


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[str]:
    try:
        with postgres.admin_dsn() as dsn:
            yield dsn
    except RuntimeError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def postgres_url(postgres_admin: str) -> Iterator[str]:
    name, url = postgres.create_database(postgres_admin)
    yield url
    postgres.drop_database(postgres_admin, name)


@pytest.fixture(scope="session")
def rabbitmq_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[rabbitmq.RabbitMQServer]:
    """One RabbitMQ node (management plugin on) for every test that only needs a broker,
    started by the first test that asks for it and killed at the end of the session, an
    interrupted one too (and by its watcher, should this process die without teardown).
    Tests use it through ``rabbitmq_vhost`` (or a module fixture of theirs calling
    ``rabbitmq_node.vhost()``); tests that stop or restart a broker start their own."""
    reason = rabbitmq.missing()
    if reason:
        pytest.skip(reason)
    with processes_in(tmp_path_factory.mktemp("rabbitmq")) as started:
        node = rabbitmq.RabbitMQServer(started, management=True, watch_parent=True)
        try:
            yield node.start()
        finally:
            node.kill()


@pytest.fixture
def rabbitmq_vhost(rabbitmq_node: rabbitmq.RabbitMQServer) -> Iterator[rabbitmq.Vhost]:
    """A virtual host of the test's own on the shared node: ``.url`` (AMQP, as guest),
    ``.management_url``, ``.api()``, ``.add_user()``, ``.alive()``. Deleted afterwards; the
    test errors with the node's log if the node died."""
    with rabbitmq_node.vhost() as vhost:
        yield vhost


@pytest.fixture
def rabbitmq_url(rabbitmq_vhost: rabbitmq.Vhost) -> str:
    """URL of a fresh virtual host on a real RabbitMQ (the shared node)."""
    return rabbitmq_vhost.url


__all__ = ["wait_for"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    """On a failure, show the end of every process log the test wrote: CI keeps nothing else."""
    report = yield
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if report.failed and isinstance(tmp_path, Path):
        for log in sorted(tmp_path.rglob("*.log"))[:8]:
            tail = log.read_text(errors="replace")[-2500:]
            report.sections.append((f"log {log.relative_to(tmp_path)} (end)", tail))
    return report
