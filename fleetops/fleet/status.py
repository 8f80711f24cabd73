"""``fleetops status``: the running fleet, each part with its address and whether it is up."""

from __future__ import annotations

import contextlib
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from fleetops.fleet.manifest import Manifest
from fleetops.urls import redact_url

# The port a URL means when it names none.
DEFAULT_PORTS = {
    "redis": 6379,
    "rediss": 6379,
    "amqp": 5672,
    "amqps": 5671,
    "pyamqp": 5672,
    "postgresql": 5432,
    "http": 80,
    "https": 443,
}
PROBE_TIMEOUT = 0.5


@dataclass(frozen=True)
class PartState:
    name: str
    url: str | None
    pid: int | None
    up: bool
    # Why it is not up ("restarting", "pid 123 has exited", "no answer on 127.0.0.1:9090").
    why: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "url": redact_url(self.url) if self.url else None,
            "pid": self.pid,
            "up": self.up,
            "why": self.why,
        }


def current_pids(run_dir: Path) -> dict[str, int | None]:
    """Name -> pid from the runner's processes.json (it follows restarts); {} when it cannot be
    read: the parts then show as not running rather than the command failing."""
    try:
        entries = json.loads((run_dir / "processes.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    pids: dict[str, int | None] = {}
    if isinstance(entries, list):
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                pid = entry.get("pid")
                pids[entry["name"]] = pid if isinstance(pid, int) and pid > 0 else None
    return pids


def pid_running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def host_port(url: str) -> tuple[str, int] | None:
    """Where a network URL points; None for a file (sqlite:///...) or what cannot be parsed."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.split("+", 1)[0]
        if not parts.hostname:
            return None
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    return (parts.hostname, port) if port else None


def answers(url: str) -> bool | None:
    """Whether something accepts a connection where ``url`` points; None when not a network
    address."""
    where = host_port(url)
    if where is None:
        return None
    with contextlib.suppress(OSError), socket.create_connection(where, timeout=PROBE_TIMEOUT):
        return True
    return False


def part_states(manifest: Manifest) -> list[PartState]:
    pids = current_pids(Path(manifest.run_dir))
    states = []
    for part in manifest.parts:
        pid = pids.get(part.name)
        if part.name not in pids:
            states.append(PartState(part.name, part.url, None, False, "not started yet"))
        elif pid is None:
            states.append(PartState(part.name, part.url, None, False, "restarting"))
        elif not pid_running(pid):
            states.append(PartState(part.name, part.url, pid, False, f"pid {pid} has exited"))
        elif part.url and answers(part.url) is False:
            where = ":".join(map(str, host_port(part.url) or ()))
            states.append(PartState(part.name, part.url, pid, False, f"no answer on {where}"))
        else:
            states.append(PartState(part.name, part.url, pid, True))
    return states


def shared_states(manifest: Manifest) -> list[tuple[str, str, bool | None]]:
    """(variable, value with any password masked, answers) for every shared address."""
    return [
        (name, redact_url(value), answers(value)) for name, value in sorted(manifest.env.items())
    ]


def render(manifest: Manifest, path: Path) -> tuple[str, bool]:
    """The text `fleetops status` prints, and whether every part is up."""
    states = part_states(manifest)
    lines = [
        f"fleet: running since {manifest.started} (fleetops up, pid {manifest.pid})",
        f"run directory: {manifest.run_dir}",
        f"manifest: {path}",
        "",
        f"  {'PART':<18}{'STATE':<7}{'PID':<9}ADDRESS",
    ]
    for state in states:
        shown = "up" if state.up else "down"
        pid = str(state.pid) if state.pid else "-"
        address = redact_url(state.url) if state.url else ""
        why = f"  ({state.why})" if state.why else ""
        lines.append(f"  {state.name:<18}{shown:<7}{pid:<9}{address}{why}".rstrip())
    lines += ["", "shared by every part (and every command run from here):"]
    for name, value, answer in shared_states(manifest):
        mark = {True: "", False: "  (no answer)", None: ""}[answer]
        lines.append(f"  {name:<30} {value}{mark}")
    return "\n".join(lines), all(state.up for state in states)


def as_json(manifest: Manifest, path: Path) -> tuple[str, bool]:
    states = part_states(manifest)
    document = {
        "running": True,
        "manifest": str(path),
        "run_dir": manifest.run_dir,
        "pid": manifest.pid,
        "started": manifest.started,
        "parts": [state.as_dict() for state in states],
        "env": {name: value for name, value, _ in shared_states(manifest)},
    }
    return json.dumps(document, indent=2), all(state.up for state in states)
