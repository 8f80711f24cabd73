"""The exporters in the local fleet: Flower (with its /metrics) and our exporter."""

from __future__ import annotations

import sys

from fleetops import ports
from fleetops.fleet.spec import FleetContext, ProcessSpec, http_ready
from fleetops.settings import ENV_PREFIX


def processes(ctx: FleetContext) -> list[ProcessSpec]:
    broker = ctx.env[ENV_PREFIX + "BROKER_URL"]
    flower_port = ctx.port(ports.FLOWER)
    exporter_port = ctx.port(ports.EXPORTER)
    # Both listen on the fleet's host only, where Prometheus (maybe on another host) scrapes.
    ctx.endpoints["flower"] = ctx.target(flower_port)
    ctx.endpoints["exporter"] = ctx.target(exporter_port)
    flower_url = ctx.url(flower_port)
    exporter_url = ctx.url(exporter_port)
    flower_argv = [
        sys.executable, "-m", "celery", "-A", "workers.app", "flower",
        f"--port={flower_port}", f"--address={ctx.host}",
    ]  # fmt: skip
    exporter_argv = [
        sys.executable, "-m", "fleetops", "exporter",
        "--host", ctx.host, "--port", str(exporter_port),
    ]  # fmt: skip
    # The broker in the environment, not on the command line: its URL may carry a password
    # (the fleet's own Redis has one off loopback), and every `ps` shows a command line.
    env = {ENV_PREFIX + "BROKER_URL": broker}
    return [
        ProcessSpec(
            "flower",
            flower_argv,
            env=env,
            ready=http_ready(f"{flower_url}/healthcheck"),
            url=flower_url,
        ),
        ProcessSpec(
            "exporter",
            exporter_argv,
            # The fleet's apps (`fleetops up` gives none: the one app on FLEETOPS_BROKER_URL),
            # not a FLEETOPS_APPS left in the operator's shell, which the children inherit.
            env={**env, ENV_PREFIX + "APPS": ctx.env.get(ENV_PREFIX + "APPS", "")},
            ready=http_ready(f"{exporter_url}/metrics"),
            url=f"{exporter_url}/metrics",
        ),
    ]
