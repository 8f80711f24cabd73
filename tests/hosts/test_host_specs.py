"""The fleet's specs for a host other than loopback, without starting anything: no part may
listen on or point at 127.0.0.1 once the fleet is given another address."""

from __future__ import annotations

import stat
from pathlib import Path

from fleetops.fleet import broker
from fleetops.fleet.components import assemble
from fleetops.fleet.spec import FleetContext
from fleetops.settings import ENV_PREFIX

# TEST-NET-1 (RFC 5737): an address no host here has, so none of its ports can be probed.
ELSEWHERE = "192.0.2.10"


def test_no_part_listens_on_or_points_at_loopback_on_another_host(tmp_path: Path) -> None:
    env = {ENV_PREFIX + "DATA_DIR": str(tmp_path / "data"), ENV_PREFIX + "LOAD_SCENARIO": "none"}
    ctx = FleetContext(tmp_path, env, host=ELSEWHERE)
    specs = assemble(ctx)
    password = ctx.env[ENV_PREFIX + "BROKER_URL"].split("@")[0].rsplit(":", 1)[1]
    for spec in specs:
        assert not any("127.0.0.1" in arg for arg in spec.argv), (spec.name, spec.argv)
        # Every `ps` shows a command line: the broker's password stays in the environment.
        assert not any(password in arg for arg in spec.argv), (spec.name, spec.argv)
        assert spec.url is None or ELSEWHERE in spec.url, (spec.name, spec.url)
    for name, endpoint in ctx.endpoints.items():
        if not endpoint.startswith("sqlite"):
            assert ELSEWHERE in endpoint, (name, endpoint)
    rendered = [p for p in (tmp_path / "alerting").rglob("*.y*ml")]
    assert rendered
    for path in rendered:
        assert "127.0.0.1" not in path.read_text(), path
    # Another host's ports cannot be probed from here: the preferred ones, each once.
    ports = [spec.url.rsplit(":", 1)[1].split("/")[0] for spec in specs if spec.url]
    assert len(ports) == len(set(ports))


def test_the_fleets_redis_gets_a_password_off_loopback_only(tmp_path: Path) -> None:
    ctx = FleetContext(tmp_path / "far", {}, host=ELSEWHERE)
    [spec] = broker.processes(ctx)
    url = ctx.env[ENV_PREFIX + "BROKER_URL"]
    conf = Path(spec.argv[1])
    password = conf.read_text().split()[1]
    assert url == f"redis://:{password}@{ELSEWHERE}:6380/0"
    assert len(password) >= 24
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert not any(password in arg for arg in spec.argv)
    assert spec.url is not None and password not in spec.url
    assert spec.argv[spec.argv.index("--bind") + 1] == ELSEWHERE

    near = FleetContext(tmp_path / "near", {}, any_port=True)
    [spec] = broker.processes(near)
    assert near.env[ENV_PREFIX + "BROKER_URL"].startswith("redis://127.0.0.1:")
    assert spec.argv[1] == "--bind"
