"""A fresh PostgreSQL database for a test: the machine's server when it answers, otherwise a
throwaway cluster of our own (initdb as the postgres OS user when we run as root)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

from fleetops.fleet.spec import ProcessSpec, free_port
from tests.processes import processes_in

ADMIN_URL_ENV = "FLEETOPS_TEST_POSTGRES_ADMIN_URL"


def _answers(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@contextlib.contextmanager
def own_cluster() -> Iterator[str]:
    initdb, postgres = _pg_bin("initdb"), _pg_bin("postgres")
    if not initdb or not postgres:
        raise RuntimeError("PostgreSQL binaries not found; scripts/test installs postgresql")
    root = Path(tempfile.mkdtemp(prefix="fleetops-pg-"))
    data, port = root / "data", free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)  # fmt: skip
    dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    # In the foreground (no pg_ctl): a server that cannot start fails at once with its log.
    argv = [*as_user, postgres, "-D", str(data), "-p", str(port), "-k", str(root),
            "-c", "listen_addresses=127.0.0.1"]  # fmt: skip
    try:
        with processes_in(root) as processes:
            server = processes.start(
                ProcessSpec("postgres", argv, ready=lambda: _answers(dsn), ready_timeout=30)
            )
            yield dsn
            # Fast shutdown: clients still connected are cut off rather than waited for.
            server.kill(signal.SIGINT)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def admin_dsn() -> Iterator[str]:
    configured = os.environ.get(ADMIN_URL_ENV)
    if configured:
        yield configured
        return
    local = "postgresql://postgres@127.0.0.1:5432/postgres"
    if _answers(local):
        yield local
        return
    with own_cluster() as dsn:
        yield dsn


def create_database(admin: str) -> tuple[str, str]:
    name = f"fleetops_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0]
    return name, f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)


def drop_database(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
