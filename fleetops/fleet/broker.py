"""The local broker of a fleet: a Redis of our own unless FLEETOPS_BROKER_URL points elsewhere."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from fleetops import ports
from fleetops.fleet.spec import FleetContext, ProcessSpec, tcp_ready
from fleetops.settings import ENV_PREFIX


def redis_server_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise FileNotFoundError(
            "redis-server is not installed: run scripts/fleet (it installs Debian's redis-server)"
            " or set FLEETOPS_BROKER_URL to a broker you run yourself"
        )
    return path


def _password_file(data: Path) -> Path:
    """A Redis configuration file, readable by its owner only, that sets a fresh password: on
    the command line it would show in every ``ps``."""
    path = data / "redis-password.conf"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as conf:
        conf.write(f"requirepass {secrets.token_urlsafe(24)}\n")
    return path


def _password(conf: Path) -> str:
    return conf.read_text().split()[1]


def processes(ctx: FleetContext) -> list[ProcessSpec]:
    if ENV_PREFIX + "BROKER_URL" in ctx.env:
        ctx.endpoints["broker"] = ctx.env[ENV_PREFIX + "BROKER_URL"]
        return []
    port = ctx.port(ports.FLEET_REDIS)
    data = ctx.run_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    # Off loopback, other hosts connect: Redis then refuses them without a password (its
    # protected mode), and a broker anyone on the network can write to runs anyone's tasks.
    conf = None if ports.is_loopback(ctx.host) else _password_file(data)
    auth = f":{_password(conf)}@" if conf is not None else ""
    url = f"redis://{auth}{ctx.target(port)}/0"
    ctx.env[ENV_PREFIX + "BROKER_URL"] = url
    ctx.endpoints["broker"] = url
    argv = [
        redis_server_binary(),
        # A configuration file must come first; the options after it add to it.
        *([str(conf)] if conf is not None else []),
        "--bind", ctx.host,
        "--port", str(port),
        "--dir", str(data),
        # Snapshot the broker like a real deployment would, so a restart keeps queued tasks.
        "--save", "60 1",
        "--appendonly", "no",
    ]  # fmt: skip
    ready = tcp_ready(ctx.host, port)
    shown = f"redis://{ctx.target(port)}/0"  # never the password
    return [ProcessSpec("redis", argv, ready=ready, url=shown, others_wait=True)]
