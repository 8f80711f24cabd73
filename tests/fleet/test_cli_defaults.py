"""`fleetops up` and `fleetops load` run the workers' default scenario, named in one place."""

from __future__ import annotations

from pathlib import Path

from fleetops import cli
from fleetops.fleet.spec import FleetContext
from tests.exporter.test_cli_defaults import app_of, command, options
from workers import cli as workers_cli
from workers.fleet import DEFAULT_SCENARIO, processes
from workers.load import SCENARIOS


def test_up_and_load_default_to_the_workers_default_scenario(tmp_path: Path) -> None:
    assert DEFAULT_SCENARIO in SCENARIOS
    [up_load] = [o for o in options(command(cli.app, "up")) if o.name == "load"]
    assert up_load.default == DEFAULT_SCENARIO
    load = command(app_of(workers_cli.register), "load")
    [scenario] = [o for o in options(load) if o.name == "scenario"]
    assert scenario.default == DEFAULT_SCENARIO
    # Started without `fleetops up` naming one, the fleet's load process runs it too.
    [spec] = [s for s in processes(FleetContext(run_dir=tmp_path, env={})) if s.name == "load"]
    assert spec.argv[spec.argv.index("--scenario") + 1] == DEFAULT_SCENARIO
