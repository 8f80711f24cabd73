"""What a component tells the fleet runner about one of its processes."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from fleetops import ports


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    # Returns True once the process serves; the runner waits for it before the next process.
    ready: Callable[[], bool] | None = None
    ready_timeout: float = 60.0
    # Shown to the person who started the fleet ("where everything is").
    url: str | None = None
    cwd: Path | None = None
    # The processes after it start only once it is ready: what they all connect to at start.
    others_wait: bool = False


@dataclass
class FleetContext:
    """Shared by the component providers while the fleet is assembled, in data-flow order."""

    run_dir: Path
    env: dict[str, str]
    endpoints: dict[str, str] = field(default_factory=dict)
    reserved_ports: set[int] = field(default_factory=set)
    # Any free port even when the preferred one is free: for tests, which share the machine
    # with a fleet that may be starting on the preferred ports right now.
    any_port: bool = False
    # The address every part listens on and the others reach it at. Loopback for the local
    # fleet; on several hosts, this host's own address as the others see it (never 0.0.0.0:
    # the address also goes into URLs and scrape targets, and listening on every interface
    # would expose the parts on networks nobody chose).
    host: str = ports.LOOPBACK

    def port(self, preferred: int) -> int:
        """The preferred port when it is free on the fleet's host, otherwise any free one.

        An address this process cannot bind (another host's, or one in another network
        namespace) cannot be probed from here: the preferred ports are taken as they are, each
        once, and a part whose port is taken says so in its log when it starts."""
        if not can_bind(self.host):
            candidate = preferred
            while candidate in self.reserved_ports:
                candidate += 1
            self.reserved_ports.add(candidate)
            return candidate
        candidate = free_port(self.host) if self.any_port else preferred
        while candidate in self.reserved_ports or not port_is_free(candidate, self.host):
            candidate = free_port(self.host)
        self.reserved_ports.add(candidate)
        return candidate

    def url(self, port: int, path: str = "") -> str:
        """``http://<host>:<port><path>``: where the other parts reach a part of this fleet."""
        return ports.url(self.host, port, path)

    def target(self, port: int) -> str:
        """``<host>:<port>``: a listen address or scrape target of this fleet."""
        return ports.target(self.host, port)

    def child_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        merged = dict(os.environ)
        merged.update(self.env)
        merged.update(extra or {})
        return merged


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def can_bind(host: str) -> bool:
    """Whether this process can listen on ``host`` (an address of its own network namespace)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, 0))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def tcp_ready(host: str, port: int) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False

    return probe


def http_ready(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return httpx.get(url, timeout=1.0).status_code < 500
        except httpx.HTTPError:
            return False

    return probe
