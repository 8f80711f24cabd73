"""The recorder's place in the local fleet: after the broker and workers, before the console
(which reads the history database)."""

from __future__ import annotations

import sys

from fleetops import ports
from fleetops.fleet.spec import FleetContext, ProcessSpec, http_ready
from fleetops.settings import ENV_PREFIX


def processes(ctx: FleetContext) -> list[ProcessSpec]:
    port = ctx.port(ports.RECORDER)
    env = {
        ENV_PREFIX + "HISTORY_METRICS_PORT": str(port),
        # Its /metrics on the fleet's host, where Prometheus (maybe on another host) scrapes.
        ENV_PREFIX + "HISTORY_METRICS_HOST": ctx.host,
    }
    ctx.env.update(env)
    # The console and `fleetops history` read the same database; pass the default along
    # explicitly so every process agrees on it.
    if ENV_PREFIX + "HISTORY_DATABASE_URL" in ctx.env:
        database = ctx.env[ENV_PREFIX + "HISTORY_DATABASE_URL"]
    else:
        from exporters.history.settings import HistorySettings

        data_dir = ctx.env.get(ENV_PREFIX + "DATA_DIR", str(ctx.run_dir / "data"))
        database = HistorySettings(data_dir=data_dir).effective_history_database_url
        ctx.env[ENV_PREFIX + "HISTORY_DATABASE_URL"] = database
    ctx.endpoints["history_database"] = database
    url = ctx.url(port, "/metrics")
    ctx.endpoints["history_metrics"] = url
    argv = [sys.executable, "-c", "from fleetops.cli import main; main()", "recorder"]
    # The fleet's apps (`fleetops up` gives none: the one app on FLEETOPS_BROKER_URL), not a
    # FLEETOPS_APPS left in the operator's shell, which the children inherit.
    env = {**env, ENV_PREFIX + "APPS": ctx.env.get(ENV_PREFIX + "APPS", "")}
    return [ProcessSpec("recorder", argv, env=env, ready=http_ready(url), url=url)]
