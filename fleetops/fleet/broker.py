"""The local broker of a fleet: a Redis of our own unless FLEETOPS_BROKER_URL points elsewhere."""

from __future__ import annotations

import shutil

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


def processes(ctx: FleetContext) -> list[ProcessSpec]:
    if ENV_PREFIX + "BROKER_URL" in ctx.env:
        ctx.endpoints["broker"] = ctx.env[ENV_PREFIX + "BROKER_URL"]
        return []
    port = ctx.port(ports.FLEET_REDIS)
    data = ctx.run_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    url = f"redis://127.0.0.1:{port}/0"
    ctx.env[ENV_PREFIX + "BROKER_URL"] = url
    ctx.endpoints["broker"] = url
    argv = [
        redis_server_binary(),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(data),
        # Snapshot the broker like a real deployment would, so a restart keeps queued tasks.
        "--save", "60 1",
        "--appendonly", "no",
    ]  # fmt: skip
    ready = tcp_ready("127.0.0.1", port)
    return [ProcessSpec("redis", argv, ready=ready, url=url, others_wait=True)]
