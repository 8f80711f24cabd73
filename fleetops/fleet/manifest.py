"""Where the running fleet is: the manifest `fleetops up` writes, and how every other command
finds it.

``fleetops up`` writes ``<run_dir>/fleet.json`` (the addresses its parts share and the pid of
the ``up`` process) and points ``runs/current`` (in the directory it was started from) at the run
directory. Every other command, started from that directory or one below it, takes the fleet's
addresses as the defaults of its FLEETOPS_* variables: a variable set in the environment wins,
and ``--fleet none`` (``FLEETOPS_FLEET=none``) looks for no fleet at all. See docs/fleet.md.

Light on purpose: every command imports it before it does anything else.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import psutil
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from fleetops.errors import ConfigError
from fleetops.settings import ENV_PREFIX

if TYPE_CHECKING:
    from fleetops.fleet.spec import ProcessSpec

MANIFEST = "fleet.json"
# runs/current -> the run directory of the fleet started from the directory holding runs/.
POINTER = "current"
# A run directory or a manifest file to use instead of runs/current, or NO_FLEET.
FLEET_ENV = ENV_PREFIX + "FLEET"
NO_FLEET = "none"
VERSION = 1
# A manifest is a few kilobytes; anything far larger is not one, and is not read into memory.
MAX_BYTES = 1024 * 1024
# The ``up`` process started within this many seconds of the time the manifest gives: the same
# process, not a later one that was given the same pid.
SAME_PROCESS_SLACK = 2.0

# What the parts of a fleet share, and so what a command run beside the fleet must agree on:
# where the broker, the databases, the object store and the monitoring are. Only addresses: a
# setting that is one process's own (its listen port) or a secret (the console password, the
# PagerDuty key) never goes into the manifest, and the manifest cannot set one either.
SHARED = tuple(
    ENV_PREFIX + name
    for name in (
        "BROKER_URL",
        "RESULT_BACKEND",
        "DATA_DIR",
        "DATABASE_URL",
        "OBJECT_STORE_DIR",
        "HISTORY_DATABASE_URL",
        "PROMETHEUS_URL",
        "ALERTMANAGER_URL",
        "BREAKING_POINTS_FILE",
    )
)

DATA_DIR = ENV_PREFIX + "DATA_DIR"
# The addresses a fleet derives from its data directory unless given: a command that sets its
# own FLEETOPS_DATA_DIR derives them from that one, not from the fleet's.
FROM_DATA_DIR = tuple(
    ENV_PREFIX + name for name in ("DATABASE_URL", "OBJECT_STORE_DIR", "HISTORY_DATABASE_URL")
)

# No NUL: the environment cannot hold one, and a value with one is not an address anyway.
Text = Annotated[str, StringConstraints(max_length=4096, pattern=r"^[^\x00]*$")]


class Part(BaseModel):
    """One process of the fleet as `fleetops up` started it."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    name: Text
    url: Text | None = None


class Manifest(BaseModel):
    """``fleet.json``: what `fleetops up` tells the commands run beside it."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    version: int = Field(VERSION, ge=1, le=VERSION)
    run_dir: Text
    pid: int = Field(gt=0, lt=2**31)
    # The ``up`` process's start (seconds since the epoch), to tell it from a later process
    # that got the same pid.
    started_at: float = Field(allow_inf_nan=False)
    env: dict[Text, Text]
    # Which of env the fleet derived from its FLEETOPS_DATA_DIR rather than being given.
    derived: list[Text] = Field(default_factory=list, max_length=len(FROM_DATA_DIR))
    parts: list[Part] = Field(default_factory=list, max_length=1000)

    @field_validator("env")
    @classmethod
    def _only_shared(cls, env: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(env) - set(SHARED))
        if unknown:
            raise ValueError(f"names variables a fleet does not share: {', '.join(unknown)}")
        return env

    @field_validator("derived")
    @classmethod
    def _only_from_data_dir(cls, derived: list[str]) -> list[str]:
        unknown = sorted(set(derived) - set(FROM_DATA_DIR))
        if unknown:
            raise ValueError(f"names variables not derived from the data dir: {unknown}")
        return derived

    @property
    def started(self) -> str:
        return datetime.fromtimestamp(self.started_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    def up_alive(self) -> bool:
        """Whether the `fleetops up` that wrote it still runs."""
        try:
            created = psutil.Process(self.pid).create_time()
        except psutil.Error:
            return False
        return abs(created - self.started_at) <= SAME_PROCESS_SLACK


# --- written by `fleetops up` ---------------------------------------------------------------


def process_started_at(pid: int) -> float:
    return psutil.Process(pid).create_time()


def write(run_dir: Path, manifest: Manifest) -> Path:
    """``run_dir/fleet.json``, replaced atomically: a reader sees the old one or the new one.
    0600: a database URL may carry a password."""
    path = run_dir / MANIFEST
    _write_atomically(path, manifest.model_dump_json(indent=2) + "\n")
    return path


def _write_atomically(path: Path, text: str) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def point_at(runs_dir: Path, run_dir: Path) -> Path:
    """Make ``runs_dir/current`` point at ``run_dir``, atomically (a symlink renamed over the
    old one). Relative when the run is under ``runs_dir``, so the tree can be moved."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    pointer = runs_dir / POINTER
    target = os.path.relpath(run_dir, runs_dir) if run_dir.parent == runs_dir else str(run_dir)
    temporary = runs_dir / f".{POINTER}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    temporary.symlink_to(target)
    os.replace(temporary, pointer)
    return pointer


def running_elsewhere(runs_dir: Path, run_dir: Path) -> str | None:
    """The run directory of another fleet that ``runs_dir/current`` points at and that still
    runs, else None (a manifest that cannot be read is no running fleet here)."""
    pointer = runs_dir / POINTER
    if not pointer.exists():
        return None
    try:
        found = find(runs_dir.parent, str(pointer))
    except ConfigError:  # stopped, or not a manifest: nothing is running there
        return None
    if found.manifest is None or Path(found.manifest.run_dir) == run_dir:
        return None
    return found.manifest.run_dir


def unpoint(runs_dir: Path, run_dir: Path) -> None:
    """Remove ``runs_dir/current`` if it still points at ``run_dir`` (a fleet started later
    from the same directory keeps its pointer)."""
    pointer = runs_dir / POINTER
    with contextlib.suppress(OSError):
        if pointer.is_symlink() and (runs_dir / os.readlink(pointer)).resolve() == run_dir:
            pointer.unlink()


# --- read by every other command ------------------------------------------------------------


@dataclass
class Found:
    """What looking for the fleet gave: its manifest (None: no fleet to use) and, when it is
    worth saying, a note for the person who ran the command."""

    manifest: Manifest | None = None
    path: Path | None = None
    note: str | None = None
    # The variables the environment set that the fleet's manifest would have set differently.
    overridden: dict[str, str] = field(default_factory=dict)


def read(path: Path) -> Manifest:
    """The manifest at ``path``; ConfigError naming the file when it is not a valid one."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the fleet manifest {path}: {exc.strerror or exc}") from exc
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"the fleet manifest {path} is over {MAX_BYTES} bytes: not a manifest")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"the fleet manifest {path} is not valid JSON: {exc}") from exc
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise ConfigError.from_validation(exc, source=f"the fleet manifest {path}") from exc


def locate(start: Path, choice: str | None) -> Path | None:
    """The manifest to use: the one ``choice`` (--fleet / FLEETOPS_FLEET) names, else the one
    ``runs/current`` points at in ``start`` or the nearest directory above it; None for none."""
    if choice is not None and choice.strip():
        if choice.strip().lower() == NO_FLEET:
            return None
        named = Path(choice).expanduser()
        return named / MANIFEST if named.is_dir() else named
    for directory in (start, *start.parents):
        pointer = directory / "runs" / POINTER
        if pointer.is_symlink() or pointer.exists():
            return pointer / MANIFEST
    return None


def untrusted(path: Path) -> str | None:
    """Why a manifest (and the runs/current pointer leading to it) cannot steer this user's
    commands, or None. On a shared host anyone may create runs/current in a directory above
    ours (/tmp/runs/current): only files of our own that nobody else may change are followed,
    or another user would pick our broker, databases and audit log."""
    uid = os.getuid()
    try:
        checked = ((path.parent, path.parent.lstat()), (path, path.stat()))
    except OSError:
        return None  # read() says what is missing
    for candidate, stat in checked:
        if stat.st_uid != uid:
            return f"{candidate} belongs to another user (uid {stat.st_uid})"
        if candidate == path and stat.st_mode & 0o022:
            return f"{candidate} may be changed by other users"
    return None


def find(start: Path, choice: str | None = None) -> Found:
    """The running fleet, seen from ``start``. A fleet that has stopped without cleaning up
    (its `fleetops up` killed) is no fleet, with a note; a fleet named explicitly that has
    stopped, or a manifest that cannot be read, is a ConfigError."""
    path = locate(start, choice)
    if path is None:
        return Found()
    named = choice is not None and choice.strip() != ""
    if not named and not path.exists():
        # runs/current left behind by a fleet whose run directory is gone.
        return Found(path=path, note=f"ignoring {path.parent}: it points at nothing")
    distrust = untrusted(path)
    if distrust is not None:
        if named:
            raise ConfigError(f"the fleet manifest {path} is not used: {distrust}")
        return Found(path=path, note=f"ignoring {path}: {distrust}")
    manifest = read(path)
    if not manifest.up_alive():
        stopped = (
            f"the fleet of {path} is not running (its fleetops up, pid {manifest.pid},"
            f" started {manifest.started}, has exited)"
        )
        if named:
            raise ConfigError(f"{stopped}; name a running fleet or --fleet none")
        return Found(path=path, note=f"ignoring {stopped}")
    return Found(manifest=manifest, path=path)


def apply(found: Found, environ: MutableMapping[str, str]) -> Found:
    """Set the fleet's shared variables in ``environ`` where it has none: the environment
    wins. Records in ``found.overridden`` what the environment set differently."""
    if found.manifest is None:
        return found
    own_data_dir = environ.get(DATA_DIR) not in (None, found.manifest.env.get(DATA_DIR))
    for name, value in found.manifest.env.items():
        if own_data_dir and name in found.manifest.derived:
            continue
        given = environ.get(name)
        if given is None:
            environ[name] = value
        elif given != value:
            found.overridden[name] = value
    return found


def shared_env(env: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``env`` (the fleet's) that go into its manifest."""
    return {name: env[name] for name in SHARED if env.get(name)}


def pin_addresses(env: MutableMapping[str, str]) -> None:
    """Write into the fleet's ``env`` the addresses its parts would otherwise each derive from
    FLEETOPS_DATA_DIR, absolute: the processes and the manifest then hold the same values, and
    a command run from another directory reaches the same files."""
    from fleetops.plugins import optional_hook
    from fleetops.settings import FleetSettings, settings_from

    settings = settings_from(FleetSettings, env)
    env[DATA_DIR] = str(settings.data_dir.resolve())
    env.setdefault(ENV_PREFIX + "DATABASE_URL", settings.effective_database_url)
    workers = optional_hook("workers.config:WorkerSettings")
    if workers is not None:
        store = settings_from(workers, env).effective_object_store_dir
        env.setdefault(ENV_PREFIX + "OBJECT_STORE_DIR", str(store))


def of_fleet(
    run_dir: Path, env: Mapping[str, str], specs: list[ProcessSpec], given: Mapping[str, str]
) -> Manifest:
    """The manifest of the fleet `fleetops up` (this process) is about to start with ``env``;
    ``given``: the variables its own environment set."""
    shared = shared_env(env)
    for spec in specs:
        # What a process is given on its own (the console its Prometheus) is shared too.
        shared.update(shared_env(spec.env))
    pid = os.getpid()
    return Manifest(
        run_dir=str(run_dir),
        pid=pid,
        started_at=process_started_at(pid),
        env=shared,
        derived=[name for name in FROM_DATA_DIR if name in shared and name not in given],
        parts=[Part(name=spec.name, url=spec.url) for spec in specs],
    )
