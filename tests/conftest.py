"""Fixtures that start real servers on free loopback ports and stop them afterwards."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleetops.fleet.spec import free_port
from tests import postgres, rabbitmq
from tests.helpers import wait_for
from tests.servers import CeleryProcess, RedisServer, celery_argv, unique_name, worker_ready


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(port=free_port(), directory=tmp_path)
    server.start()
    yield server
    server.stop()


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


def _child_env(fleet_env: dict[str, str], env: dict[str, str] | None) -> dict[str, str]:
    merged = {k: v for k, v in os.environ.items() if not k.startswith("FLEETOPS_")}
    merged.update(fleet_env)
    merged.update(env or {})
    merged.setdefault("PYTHONUNBUFFERED", "1")
    return merged


@pytest.fixture
def start_worker(
    fleet_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., CeleryProcess]]:
    started: list[CeleryProcess] = []

    def start(
        queues: str = "images",
        name: str | None = None,
        concurrency: int = 2,
        env: dict[str, str] | None = None,
        pool: str = "prefork",
    ) -> CeleryProcess:
        node = f"{name or unique_name('worker')}@127.0.0.1"
        argv = celery_argv(
            "worker", "-Q", queues, "-n", node, "-c", str(concurrency), "-P", pool,
            "--loglevel=INFO", "-E", "--without-mingle", "--without-gossip",
        )  # fmt: skip
        worker = CeleryProcess(
            "worker", node, argv, _child_env(fleet_env, env), tmp_path / f"{node}.log"
        )
        started.append(worker.start())
        wait_for(lambda: worker_ready(worker), timeout=60, message=f"worker {node} ready")
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def start_beat(fleet_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., CeleryProcess]]:
    started: list[CeleryProcess] = []

    def start(env: dict[str, str] | None = None) -> CeleryProcess:
        schedule = tmp_path / f"beat-{len(started)}"
        argv = celery_argv("beat", "--loglevel=INFO", "-s", str(schedule))
        beat = CeleryProcess(
            "beat", "beat", argv, _child_env(fleet_env, env), tmp_path / "beat.log"
        )
        started.append(beat.start())
        wait_for(lambda: beat.logged("beat: Starting"), timeout=60, message="beat started")
        return beat

    yield start
    for beat in started:
        beat.stop()


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
