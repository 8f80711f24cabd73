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


@pytest.fixture
def rabbitmq_url() -> Iterator[str]:
    """URL of a fresh virtual host on a real RabbitMQ."""
    reason = rabbitmq.available()
    if reason:
        pytest.skip(reason)
    vhost, url = rabbitmq.create_vhost()
    yield url
    rabbitmq.delete_vhost(vhost)


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
