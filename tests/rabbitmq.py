"""A fresh RabbitMQ virtual host on the machine's RabbitMQ (starting a broker of our own per
test run costs more than the tests that use it); skipped where no RabbitMQ answers."""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid


def available() -> str | None:
    """None when usable, else why not."""
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl not installed"
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return None
    except OSError:
        return "no RabbitMQ on 127.0.0.1:5672"


def _ctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def create_vhost() -> tuple[str, str]:
    vhost = f"fleetops-test-{uuid.uuid4().hex[:8]}"
    _ctl("add_vhost", vhost)
    _ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    return vhost, f"amqp://guest:guest@127.0.0.1:5672/{vhost}"


def delete_vhost(vhost: str) -> None:
    _ctl("delete_vhost", vhost)
