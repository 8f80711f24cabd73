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
    ctx.endpoints["flower"] = f"127.0.0.1:{flower_port}"
    ctx.endpoints["exporter"] = f"127.0.0.1:{exporter_port}"
    flower_url = f"http://127.0.0.1:{flower_port}"
    exporter_url = f"http://127.0.0.1:{exporter_port}"
    flower_argv = [
        sys.executable, "-m", "celery", "-A", "workers.app", "flower",
        f"--port={flower_port}", "--address=127.0.0.1", f"--broker={broker}",
    ]  # fmt: skip
    exporter_argv = [
        sys.executable, "-m", "fleetops", "exporter", "--broker-url", broker,
        "--host", "127.0.0.1", "--port", str(exporter_port),
    ]  # fmt: skip
    return [
        ProcessSpec(
            "flower",
            flower_argv,
            ready=http_ready(f"{flower_url}/healthcheck"),
            url=flower_url,
        ),
        ProcessSpec(
            "exporter",
            exporter_argv,
            ready=http_ready(f"{exporter_url}/metrics"),
            url=f"{exporter_url}/metrics",
        ),
    ]
