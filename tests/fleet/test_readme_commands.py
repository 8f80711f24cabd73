"""The README's everyday commands, run exactly as written against a fleet started by the fleet
command, change that fleet: its dead letters, its task history, its images. Nothing tells the
commands where the fleet is: they find it from the directory it was started in, as a person on
call would run them."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from sqlalchemy import create_engine, text

from exporters.history.database import create_history_engine
from exporters.history.queries import TaskFilter, count_tasks
from fleetops.fleet import manifest
from fleetops.fleet.spec import ProcessSpec
from fleetops.settings import ENV_PREFIX
from tests.helpers import wait_for
from tests.processes import REPO, Child, processes_in
from tests.servers import RedisServer
from workers import deadletter
from workers.client import client_app
from workers.images import samples
from workers.queues import IMAGES

README = REPO / "README.md"
# Commands of the block this test does not run, and why.
NOT_RUN = {
    "fleetops up": "the fleet command itself: the fixture started the fleet with it",
    "python bench/": "a benchmark, not a fleet command: it runs its peer side by side for minutes",
}
# How long a command of the README may take here (imports on a busy machine, 200 uploads).
COMMAND_TIMEOUT = 180


@dataclass
class Fleet:
    """A fleet started by `fleetops up` from ``here``, the directory the commands run in."""

    here: Path
    up: Child
    manifest: manifest.Manifest

    def setting(self, name: str) -> str:
        return self.manifest.env[ENV_PREFIX + name]

    def dead_letters(self) -> list[deadletter.DeadLetter]:
        self.up.alive()
        return deadletter.entries(client_app(self.setting("BROKER_URL")), limit=100_000)

    def tasks(self, name: str, state: str, text: str | None = None) -> int:
        self.up.alive()
        engine = create_history_engine(self.setting("HISTORY_DATABASE_URL"))
        try:
            return count_tasks(engine, TaskFilter(name=name, state=state, text=text))
        finally:
            engine.dispose()

    def image_status(self, image_id: str) -> str | None:
        self.up.alive()
        engine = create_engine(self.setting("DATABASE_URL"))
        try:
            with engine.connect() as conn:
                return conn.execute(
                    text("select status from images where id = :id"), {"id": image_id}
                ).scalar()
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("readme")
    here = root / "here"
    here.mkdir()
    with processes_in(root / "logs") as processes:
        argv = [sys.executable, "-m", "fleetops", "up", "--run-dir", str(here / "runs" / "one"),
                "--load", "none", "--any-port"]  # fmt: skip
        # Started from `here`, as a person starts it from the repository: runs/current is there.
        spec = ProcessSpec("fleetops-up", argv, cwd=here, ready_timeout=240)
        up = processes.start(spec, ready_log="the fleet is running")
        pointer = here / "runs" / manifest.POINTER
        yield Fleet(here, up, manifest.read(pointer / manifest.MANIFEST))
        code = up.kill(signal.SIGINT, grace=60)
        assert code == 0, up.log()[-3000:]
        # Stopped cleanly, the fleet is no longer found.
        assert not pointer.exists() and not pointer.is_symlink()


def everyday_commands() -> list[str]:
    """The lines of the README's "Everyday commands" block, comments dropped."""
    section = README.read_text(encoding="utf-8").split("## Everyday commands", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block, "README.md: no ```bash block under ## Everyday commands"
    return [" ".join(shlex.split(line, comments=True)) for line in block[1].splitlines()]


def uv_env(**extra: str) -> dict[str, str]:
    """The environment of a person on call: no FLEETOPS_ variable says where the fleet is. uv
    is told which project to run (the commands run from the fleet's directory, not the
    repository) and, as every run of uv here, not to touch uv.lock or the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env["PATH"] = f"{Path.home() / '.local' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.update(UV_PROJECT=str(REPO), UV_FROZEN="1", UV_NO_SYNC="1", UV_PYTHON_DOWNLOADS="never")
    env.update(extra)
    return env


def run_as_written(command: str, here: Path) -> subprocess.CompletedProcess[str]:
    env = uv_env()
    argv = shlex.split(command)
    assert shutil.which(argv[0], path=env["PATH"]), f"{argv[0]} is not installed: scripts/setup"
    return subprocess.run(
        argv, cwd=here, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )


def option(argv: list[str], name: str) -> str:
    assert name in argv, f"{shlex.join(argv)}: this check reads {name}; update it"
    return argv[argv.index(name) + 1]


# --- what each command must do to the fleet ------------------------------------------------

Result = subprocess.CompletedProcess[str]


def lists_the_commands(argv: list[str], result: Result, fleet: Fleet) -> None:
    for command in ("up", "status", "load", "upload", "dlq"):
        assert re.search(rf"\b{command}\b", result.stdout), result.stdout


def shows_the_fleet(argv: list[str], result: Result, fleet: Fleet) -> None:
    assert f"run directory: {fleet.manifest.run_dir}" in result.stdout, result.stdout
    for part in fleet.manifest.parts:
        assert re.search(rf"^  {re.escape(part.name)}\s+up\s", result.stdout, re.M), result.stdout
    assert fleet.setting("BROKER_URL") in result.stdout


def storm_ends_in_the_fleets_dead_letters(argv: list[str], result: Result, fleet: Fleet) -> None:
    assert option(argv, "--scenario") == "failure-storm"
    count = int(option(argv, "--count"))
    assert f"{count} uploads ({count} broken" in result.stdout, result.stdout
    # Every broken upload was found by the fleet's workers (its record in the database they
    # read) and rejected as an invalid image, not as a missing record.
    wait_for(
        lambda: fleet.tasks("images.process", "FAILURE") >= count,
        timeout=120,
        message=f"{count} failed images.process in the fleet's history",
    )
    letters = wait_for(
        lambda: (found := fleet.dead_letters()) and len(found) >= count and found,
        timeout=60,
        message=f"{count} dead letters in the fleet's broker",
    )
    assert len(letters) == count
    assert {letter.exception for letter in letters} == {"InvalidImage"}
    assert not [letter.reason for letter in letters if "no image record" in letter.reason]


def upload_is_processed_by_the_fleet(argv: list[str], result: Result, fleet: Fleet) -> None:
    image_id = result.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", image_id), result.stdout
    wait_for(
        lambda: fleet.image_status(image_id) == "done",
        timeout=90,
        message=f"image {image_id} processed by the fleet's workers",
    )
    wait_for(
        lambda: fleet.tasks("images.process", "SUCCESS", text=image_id) == 1,
        timeout=60,
        message="its images.process success in the fleet's history",
    )


def lists_the_fleets_dead_letters(argv: list[str], result: Result, fleet: Fleet) -> None:
    letters = fleet.dead_letters()
    assert letters, "nothing in the dead-letter queue to list: run the storm first"
    assert f"{len(letters)} dead-lettered task(s)" in result.stderr, result.stderr
    listed = result.stdout.splitlines()
    assert len(listed) == len(letters)
    assert {line.split()[0] for line in listed} == {letter.id for letter in letters}


def dry_run_counts_without_requeueing(argv: list[str], result: Result, fleet: Fleet) -> None:
    assert "--dry-run" in argv, "this check is for the dry run; a real requeue needs its own"
    exception = option(argv, "--exception")
    letters = fleet.dead_letters()
    matching = [letter for letter in letters if letter.exception == exception]
    assert matching
    assert f"would requeue {len(matching)} entries" in result.stderr, result.stderr
    assert len(fleet.dead_letters()) == len(letters)


# The longest key a command starts with (after "uv run") says what it must do.
CHECKS: dict[str, Callable[[list[str], Result, Fleet], None]] = {
    "fleetops --help": lists_the_commands,
    "fleetops status": shows_the_fleet,
    "fleetops load": storm_ends_in_the_fleets_dead_letters,
    "fleetops upload": upload_is_processed_by_the_fleet,
    "fleetops dlq list": lists_the_fleets_dead_letters,
    "fleetops dlq requeue": dry_run_counts_without_requeueing,
}


def what_it_is(command: str) -> str:
    assert command.startswith("uv run "), f"README: {command!r} is not run with uv run"
    rest = command.removeprefix("uv run ")
    known = [key for key in (*CHECKS, *NOT_RUN) if rest == key or rest.startswith(key + " ")]
    known += [key for key in NOT_RUN if key.endswith("/") and rest.startswith(key)]
    assert known, f"README: no check for {command!r}: say here what it must do to the fleet"
    return max(known, key=len)


def test_the_readme_commands_change_the_running_fleet(fleet: Fleet) -> None:
    (fleet.here / "photo.jpg").write_bytes(samples.jpeg(7, 640, 480))
    checked = []
    for command in everyday_commands():
        key = what_it_is(command)
        if key in NOT_RUN:
            continue
        result = run_as_written(command, fleet.here)
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr}"
        CHECKS[key](shlex.split(command)[2:], result, fleet)
        checked.append(key)
    assert sorted(checked) == sorted(CHECKS), "a check no README command reaches"


def test_status_finds_the_fleet_from_below_and_not_from_elsewhere(
    fleet: Fleet, tmp_path: Path
) -> None:
    below = fleet.here / "some" / "where"
    below.mkdir(parents=True, exist_ok=True)
    shown = subprocess.run(
        [sys.executable, "-m", "fleetops", "status", "--json"],
        cwd=below, env=uv_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr + shown.stdout
    assert f'"run_dir": "{fleet.manifest.run_dir}"' in shown.stdout
    elsewhere = subprocess.run(
        [sys.executable, "-m", "fleetops", "status"],
        cwd=tmp_path, env=uv_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert elsewhere.returncode == 1, elsewhere.stderr
    assert "no fleet is running" in elsewhere.stderr
    # The fleet's own processes never look for a fleet: every address comes from `up`.
    [worker] = [
        p for p in psutil.Process(fleet.manifest.pid).children()
        if "worker" in p.cmdline() and "images" in p.cmdline()
    ]  # fmt: skip
    assert worker.environ()[manifest.FLEET_ENV] == manifest.NO_FLEET


def _depth(server: RedisServer, queue: str) -> int:
    """Messages in a queue's Redis lists: kombu keeps one per priority step."""
    client = server.client()
    keys = [queue, *client.scan_iter(match=f"{queue}\x06\x16*")]
    return sum(client.llen(key) for key in keys)


def test_an_explicit_broker_url_wins_over_the_fleet(fleet: Fleet, tmp_path: Path) -> None:
    with processes_in(tmp_path) as processes:
        elsewhere = RedisServer(processes).start()
        result = subprocess.run(
            [sys.executable, "-m", "fleetops", "load", "--scenario", "burst", "--count", "3"],
            cwd=fleet.here, env=uv_env(FLEETOPS_BROKER_URL=elsewhere.url),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert f"{ENV_PREFIX}BROKER_URL is set, so it is used rather than" in result.stderr
        # No worker consumes that Redis: the three uploads wait in its images queue.
        assert _depth(elsewhere, IMAGES) == 3
