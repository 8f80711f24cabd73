"""Two hosts on one machine: network namespaces joined by a veth pair, which a test can cut.

- The **server** namespace and the **worker** namespace are joined by a veth pair on
  ``10.X.Y.0/30`` (server ``.1``, worker ``.2``): the only path between the two hosts.
- The test itself (the root namespace, "the operator's laptop") reaches the server through a
  second veth pair on ``10.X.Y.4/30`` (test ``.5``, server ``.6``) and a route to ``.0/30``, so
  it can talk to the parts at the server's address ``.1`` and probe them while they start. It
  has no route to the worker host at all.
- Each namespace has its loopback up, as every host has: the parts listen on the link address
  only, so a part that still talks to 127.0.0.1 finds nothing there.

Names carry the pid and start time of the process that made them and a random tag; the subnet
``10.X.Y.0/29`` is random and checked against the root namespace's own routes, so parallel runs
do not clash. A run killed before it cleaned up leaves namespaces whose owner is gone: the next
run removes them, and ends the processes still inside them (they are the dead run's).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import re
import secrets
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

PREFIX = "fleetops-hosts-"
_OURS = re.compile(re.escape(PREFIX) + r"(\d+)-(\d+)-[0-9a-f]+-(server|worker)$")


class NetnsError(RuntimeError):
    pass


def ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def not_permitted() -> str | None:
    """Why network namespaces cannot be made here, or None when they can."""
    name = f"{PREFIX}probe-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        ip("netns", "add", name)
    except (NetnsError, OSError) as error:
        return f"cannot create a network namespace (needs root and iproute2): {error}"
    ip("netns", "del", name, check=False)
    return None


@dataclass(frozen=True)
class Host:
    name: str
    namespace: str
    address: str
    # Its end of the link between the hosts.
    device: str

    def prefix(self) -> list[str]:
        """What runs a command on this host."""
        return ["ip", "netns", "exec", self.namespace]


@dataclass(frozen=True)
class Network:
    server: Host
    worker: Host

    def partition(self) -> None:
        """Cut the worker host off: its end of the link goes down, as a pulled cable."""
        ip("-n", self.worker.namespace, "link", "set", "dev", self.worker.device, "down")

    def drop_connections(self) -> None:
        """Close the worker host's TCP connections to the server, as a partition that outlasts
        them does (kernel timeouts, a firewall or NAT forgetting them): a short cut alone only
        stalls the connections, and they resume as if nothing happened."""
        argv = [*self.worker.prefix(), "ss", "-K", "dst", self.server.address]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise NetnsError(f"{' '.join(argv)}: {done.stderr.strip()}")

    def heal(self) -> None:
        ip("-n", self.worker.namespace, "link", "set", "dev", self.worker.device, "up")


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # Field 22, counted after the command name, which may hold spaces and parentheses.
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _remove(namespace: str) -> None:
    """End whatever still runs in ``namespace``, then delete it; its veth ends (and their peers,
    and the routes over them) go with it."""
    for pid in ip("netns", "pids", namespace, check=False).split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    ip("netns", "del", namespace, check=False)


def remove_stale() -> list[str]:
    """Remove the namespaces of runs whose process is gone; their names."""
    stale = []
    for line in ip("netns", "list").splitlines():
        name = line.split()[0] if line.strip() else ""
        match = _OURS.match(name)
        if match and _start_time(int(match[1])) != match[2]:
            _remove(name)
            stale.append(name)
    return stale


def _taken() -> list[ipaddress.IPv4Network]:
    """Every network the root namespace routes or has an address in."""
    taken = []
    for route in json.loads(ip("-j", "-4", "route", "show", "table", "all") or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default":
            with contextlib.suppress(ValueError):
                taken.append(ipaddress.IPv4Network(dst, strict=False))
    for link in json.loads(ip("-j", "-4", "addr") or "[]"):
        for info in link.get("addr_info", []):
            taken.append(ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", False))
    return taken


def _free_subnet() -> ipaddress.IPv4Network:
    taken = _taken()
    for _ in range(100):
        candidate = ipaddress.IPv4Network(
            f"10.{random.randint(100, 254)}.{random.randint(0, 255)}.{8 * random.randint(0, 31)}/29"
        )
        if not any(candidate.overlaps(net) for net in taken):
            return candidate
    raise NetnsError("no free 10.x.y.z/29 in this machine's routes")


@contextlib.contextmanager
def two_hosts() -> Iterator[Network]:
    """A server host and a worker host, removed again however the block ends."""
    remove_stale()
    pid = os.getpid()
    tag = secrets.token_hex(3)
    stem = f"{PREFIX}{pid}-{_start_time(pid)}-{tag}"
    server_ns, worker_ns = f"{stem}-server", f"{stem}-worker"
    # Device names are at most 15 characters: the tag keeps them apart between runs.
    server_dev, worker_dev = f"fo{tag}s", f"fo{tag}w"
    test_dev, test_peer = f"fo{tag}t", f"fo{tag}r"
    try:
        ip("netns", "add", server_ns)
        ip("netns", "add", worker_ns)
        for namespace in (server_ns, worker_ns):
            ip("-n", namespace, "link", "set", "dev", "lo", "up")
        ip("link", "add", server_dev, "netns", server_ns, "type", "veth",
           "peer", "name", worker_dev, "netns", worker_ns)  # fmt: skip
        ip("link", "add", test_dev, "type", "veth", "peer", "name", test_peer, "netns", server_ns)
        # One chance in a million that a parallel run picks the same subnet at the same
        # moment: the route below then exists already, and this run fails saying so.
        subnet = _free_subnet()
        hosts = list(subnet.hosts())  # .1 ... .6 of the /29
        ip("addr", "add", f"{hosts[4]}/30", "dev", test_dev)
        addresses = [
            (server_ns, server_dev, f"{hosts[0]}/30"),
            (worker_ns, worker_dev, f"{hosts[1]}/30"),
            (server_ns, test_peer, f"{hosts[5]}/30"),
        ]
        for namespace, device, address in addresses:
            ip("-n", namespace, "addr", "add", address, "dev", device)
            ip("-n", namespace, "link", "set", "dev", device, "up")
        ip("link", "set", "dev", test_dev, "up")
        ip("route", "add", str(next(subnet.subnets(new_prefix=30))), "via", str(hosts[5]))
        yield Network(
            server=Host("server", server_ns, str(hosts[0]), server_dev),
            worker=Host("worker", worker_ns, str(hosts[1]), worker_dev),
        )
    finally:
        for namespace in (worker_ns, server_ns):
            _remove(namespace)
        # Gone with its peer in the server namespace; only a failed set-up leaves it behind.
        ip("link", "del", test_dev, check=False)
