"""Processes this component adds to the local fleet (see fleetops.fleet.components)."""

from __future__ import annotations

from console.cli import streamlit_argv
from fleetops import ports
from fleetops.fleet.spec import FleetContext, ProcessSpec, http_ready
from fleetops.settings import ENV_PREFIX

# Endpoint set by an earlier component -> the console's variable.
SOURCES = {
    "prometheus": "PROMETHEUS_URL",
    "alertmanager": "ALERTMANAGER_URL",
    "history_database": "HISTORY_DATABASE_URL",
}


def processes(ctx: FleetContext) -> list[ProcessSpec]:
    port = ctx.port(ports.CONSOLE)
    env = {
        ENV_PREFIX + variable: ctx.endpoints[endpoint]
        for endpoint, variable in SOURCES.items()
        if endpoint in ctx.endpoints
    }
    url = ctx.url(port)
    return [
        ProcessSpec(
            "console",
            streamlit_argv(ctx.host, port),
            env=env,
            ready=http_ready(f"{url}/_stcore/health"),
            ready_timeout=90.0,
            url=url,
        )
    ]
