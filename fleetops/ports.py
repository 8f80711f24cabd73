"""Where each part of a fleet listens unless told otherwise: the one table of default ports.

Settings default to these, the local fleet prefers them (taking any free port when one is
busy), and the generated Prometheus and Alertmanager configuration points at them. Every
address stays configurable: nothing assumes the parts share a host.
"""

from __future__ import annotations

import ipaddress

LOOPBACK = "127.0.0.1"

# The local fleet's own Redis, when no FLEETOPS_BROKER_URL is given: next to, never on, the
# 6379 of a Redis the machine may already run.
FLEET_REDIS = 6380
EXPORTER = 9808
RECORDER = 9818
FLOWER = 5555
PROMETHEUS = 9090
ALERTMANAGER = 9093
PAGER = 9095
CONSOLE = 8501
GRAFANA = 3000


def is_loopback(host: str) -> bool:
    """Whether only this host can reach ``host`` (127.0.0.0/8, ::1, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: it may resolve to any host
        return False


def target(host: str, port: int) -> str:
    """``10.0.0.1:9808``: a scrape target or a listen address (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def url(host: str, port: int, path: str = "") -> str:
    """``http://10.0.0.1:9090/path``: a service on ``host``."""
    return f"http://{target(host, port)}{path}"


def local_target(port: int) -> str:
    """``127.0.0.1:9808``: a scrape target on this host."""
    return target(LOOPBACK, port)


def local_url(port: int, path: str = "") -> str:
    """``http://127.0.0.1:9090/path``: a service on this host."""
    return url(LOOPBACK, port, path)
