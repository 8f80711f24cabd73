"""How commands find the running fleet: a manifest whose `fleetops up` has gone is ignored with
a note, one that cannot be read stops the command with the file's name (never a traceback), and
the environment wins over the manifest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetops.errors import ConfigError
from fleetops.fleet import manifest
from fleetops.fleet.manifest import Manifest
from fleetops.fleet.spec import free_port
from fleetops.settings import ENV_PREFIX
from workers.images import samples

BROKER = ENV_PREFIX + "BROKER_URL"
DATA_DIR = ENV_PREFIX + "DATA_DIR"
DATABASE = ENV_PREFIX + "DATABASE_URL"


def a_manifest(run_dir: Path, pid: int | None = None, started_at: float | None = None) -> Manifest:
    if started_at is None:
        started_at = manifest.process_started_at(os.getpid()) if pid is None else time.time()
    return Manifest(
        run_dir=str(run_dir),
        pid=os.getpid() if pid is None else pid,
        started_at=started_at,
        env={
            BROKER: "redis://127.0.0.1:1/0",
            DATA_DIR: str(run_dir / "data"),
            DATABASE: f"sqlite:///{run_dir / 'data' / 'fleetops.db'}",
        },
        derived=[DATABASE],
        parts=[manifest.Part(name="redis", url="redis://127.0.0.1:1/0")],
    )


def started_fleet(here: Path, fleet: Manifest) -> Path:
    """A run directory under ``here/runs`` with ``fleet`` in it, runs/current pointing at it."""
    run_dir = Path(fleet.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest.write(run_dir, fleet)
    manifest.point_at(here / "runs", run_dir)
    return run_dir


def exited_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def fleetops(here: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    return subprocess.run(
        [sys.executable, "-m", "fleetops", *args],
        cwd=here, env={**clean, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_running_fleet_is_found_from_below_and_the_environment_wins(tmp_path: Path) -> None:
    run_dir = started_fleet(tmp_path, a_manifest(tmp_path / "runs" / "one"))
    below = tmp_path / "a" / "b"
    below.mkdir(parents=True)
    found = manifest.find(below)
    assert found.manifest is not None and found.manifest.run_dir == str(run_dir)
    environ = {BROKER: "redis://mine:6379/0"}
    manifest.apply(found, environ)
    assert environ[BROKER] == "redis://mine:6379/0"
    assert found.overridden == {BROKER: "redis://127.0.0.1:1/0"}
    assert environ[DATA_DIR] == str(run_dir / "data")
    assert environ[DATABASE] == f"sqlite:///{run_dir / 'data' / 'fleetops.db'}"
    # A data dir of one's own: what the fleet derived from its data dir is not taken either.
    environ = {DATA_DIR: str(tmp_path / "mine")}
    manifest.apply(manifest.find(below), environ)
    assert DATABASE not in environ and environ[BROKER] == "redis://127.0.0.1:1/0"
    assert manifest.find(below, "none").manifest is None
    assert manifest.find(tmp_path.parent / "elsewhere").manifest is None


def test_a_fleet_whose_up_has_gone_is_ignored_with_a_note(tmp_path: Path) -> None:
    started_fleet(tmp_path, a_manifest(tmp_path / "runs" / "one", pid=exited_pid()))
    found = manifest.find(tmp_path)
    assert found.manifest is None
    assert found.note and "is not running" in found.note
    # The pid of a live process started at another time: a later process with a reused pid.
    started_fleet(tmp_path, a_manifest(tmp_path / "runs" / "two", started_at=1.0))
    assert manifest.find(tmp_path).manifest is None
    # Named explicitly, a stopped fleet is an error, not a silent fallback to the defaults.
    with pytest.raises(ConfigError, match="is not running"):
        manifest.find(tmp_path, str(tmp_path / "runs" / "two"))


def test_a_pointer_at_a_removed_run_is_ignored(tmp_path: Path) -> None:
    run_dir = started_fleet(tmp_path, a_manifest(tmp_path / "runs" / "one"))
    (run_dir / manifest.MANIFEST).unlink()
    found = manifest.find(tmp_path)
    assert found.manifest is None and found.note and "points at nothing" in found.note


def test_a_manifest_others_may_change_is_not_followed(tmp_path: Path) -> None:
    # On a shared host anyone may leave /tmp/runs/current above our directory.
    run_dir = started_fleet(tmp_path, a_manifest(tmp_path / "runs" / "one"))
    written = run_dir / manifest.MANIFEST
    assert manifest.find(tmp_path).manifest is not None
    written.chmod(0o666)
    found = manifest.find(tmp_path)
    assert found.manifest is None and found.note and "may be changed by other users" in found.note
    with pytest.raises(ConfigError, match="may be changed by other users"):
        manifest.find(tmp_path, str(run_dir))
    written.chmod(0o600)
    if os.geteuid() != 0:
        return  # only root can give the pointer to another user here
    os.lchown(tmp_path / "runs" / manifest.POINTER, 4242, 4242)
    found = manifest.find(tmp_path)
    assert found.manifest is None and found.note and "belongs to another user" in found.note


HOSTILE = {
    "not JSON": b"{",
    "not UTF-8": b'{"run_dir": "\xff"}',
    "a list": b"[]",
    "pid a string": json.dumps({"run_dir": "/r", "pid": "1", "started_at": 1.0, "env": {}}),
    "started_at NaN": b'{"run_dir": "/r", "pid": 1, "started_at": NaN, "env": {}}',
    "a secret in env": json.dumps(
        {"run_dir": "/r", "pid": 1, "started_at": 1.0, "env": {"FLEETOPS_CONSOLE_PASSWORD": "x"}}
    ),
    "NUL in a value": json.dumps(
        {"run_dir": "/r", "pid": 1, "started_at": 1.0, "env": {BROKER: "redis://a\u0000b"}}
    ),
    "huge": b'{"run_dir": "' + b"x" * (manifest.MAX_BYTES + 10) + b'"}',
}


@pytest.mark.parametrize("content", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_manifest_is_an_error_naming_the_file(tmp_path: Path, content) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / manifest.MANIFEST
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError, match=str(path)):
        manifest.read(path)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
KEYS = st.sampled_from(["version", "run_dir", "pid", "started_at", "env", "parts"])


@settings(max_examples=200, deadline=None)
@given(document=st.dictionaries(KEYS, JSON, max_size=6))
def test_any_json_is_a_manifest_or_a_config_error(tmp_path_factory, document) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("hostile") / manifest.MANIFEST
    path.write_text(json.dumps(document))
    try:
        manifest.read(path)
    except ConfigError as exc:
        assert str(path) in str(exc)


def test_the_cli_says_what_is_wrong_without_a_traceback(tmp_path: Path) -> None:
    run_dir = started_fleet(tmp_path, a_manifest(tmp_path / "runs" / "one"))
    (run_dir / manifest.MANIFEST).write_text('{"run_dir": ')
    broken = fleetops(tmp_path, "dlq", "list")
    assert broken.returncode == 2, broken.stderr
    assert str(run_dir.parent / "current" / manifest.MANIFEST) in broken.stderr
    assert "Traceback" not in broken.stderr
    # --fleet none, or the variable, and the broken file is not even read.
    assert fleetops(tmp_path, "--fleet", "none", "load", "--help").returncode == 0
    assert fleetops(tmp_path, "load", "--help", FLEETOPS_FLEET="none").returncode == 0


def test_a_stopped_fleet_is_noted_and_status_says_none_runs(tmp_path: Path) -> None:
    started_fleet(tmp_path, a_manifest(tmp_path / "runs" / "one", pid=exited_pid()))
    helped = fleetops(tmp_path, "load", "--help")
    assert helped.returncode == 0, helped.stderr
    [note] = helped.stderr.splitlines()
    assert note.startswith("fleetops: ignoring the fleet of") and "has exited" in note
    status = fleetops(tmp_path, "status")
    assert status.returncode == 1, status.stderr
    assert "no fleet is running" in status.stderr


def test_no_fleet_and_no_broker_says_which_broker_it_falls_back_to(tmp_path: Path) -> None:
    alone = fleetops(tmp_path, "load", "--help")
    assert alone.returncode == 0, alone.stderr
    assert "no running fleet" in alone.stderr and "redis://127.0.0.1:6379/0" in alone.stderr
    told = fleetops(tmp_path, "load", "--help", FLEETOPS_BROKER_URL="redis://127.0.0.1:7/0")
    assert told.returncode == 0 and told.stderr == ""


def test_a_broker_that_does_not_answer_is_one_line_naming_it(tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(samples.jpeg(1, 64, 48))
    # Nothing listens there: the port was free a moment ago and nobody was told about it.
    broker = f"redis://user:secret@127.0.0.1:{free_port()}/0"
    failed = fleetops(tmp_path, "upload", "photo.jpg", FLEETOPS_BROKER_URL=broker)
    assert failed.returncode == 1, failed.stderr
    assert "cannot reach the broker redis://user:***@127.0.0.1" in failed.stderr
    assert "Traceback" not in failed.stderr and "secret" not in failed.stderr


def test_status_says_which_part_is_down_and_why(tmp_path: Path) -> None:
    # The test process stands in for `fleetops up` (alive) and for a part that runs but does
    # not answer on its port; a finished child is a part that has exited.
    silent = f"http://127.0.0.1:{free_port()}"
    fleet = a_manifest(tmp_path / "runs" / "one").model_copy(
        update={
            "parts": [
                manifest.Part(name="gone", url=None),
                manifest.Part(name="silent", url=silent),
                manifest.Part(name="fine", url=None),
            ]
        }
    )
    run_dir = started_fleet(tmp_path, fleet)
    pids = [{"name": "gone", "pid": exited_pid()}, {"name": "silent", "pid": os.getpid()},
            {"name": "fine", "pid": os.getpid()}]  # fmt: skip
    (run_dir / "processes.json").write_text(json.dumps(pids))
    status = fleetops(tmp_path, "status")
    assert status.returncode == 3, status.stderr
    lines = {line.split()[0]: line for line in status.stdout.splitlines() if line.startswith("  ")}
    assert " down " in lines["gone"] and "has exited" in lines["gone"]
    assert " down " in lines["silent"] and "no answer on 127.0.0.1" in lines["silent"]
    assert " up " in lines["fine"]
