"""A fresh RabbitMQ virtual host on the machine's RabbitMQ (starting a broker of our own per
test run costs more than the tests that use it); skipped where no RabbitMQ answers. Tests that
need what that node lacks (the management plugin) start a RabbitMQServer of their own."""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid
from dataclasses import dataclass, field

import httpx

from fleetops.fleet.spec import ProcessSpec, free_port
from tests.processes import Child, Processes

GUEST = ("guest", "guest")


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


# The server itself, without the Debian wrapper (which switches to the rabbitmq user and the
# system's configuration).
SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
# Erlang and RabbitMQ's boot take 10 to 30 s on a busy 2-core machine.
READY_TIMEOUT = 120.0


@dataclass
class RabbitMQServer:
    """A RabbitMQ node of the test's own, on free loopback ports, in the run directory.

    Started only by tests that need what the machine's RabbitMQ lacks: with ``management``, the
    management plugin on a port of its own, statistics every 0.5 s instead of 5 s (so tests
    wait less for them). Without it (the default) no plugin is loaded, which starts faster.
    """

    processes: Processes
    management: bool = False
    port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    name: str = field(default_factory=lambda: f"fleetops-test-{uuid.uuid4().hex[:8]}")
    child: Child | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    def api(self, method: str, path: str, json: object = None) -> httpx.Response:
        """A call to the management API as the administrator ``guest``."""
        response = httpx.request(
            method, f"{self.management_url}/api/{path}", json=json, auth=GUEST, timeout=10
        )
        response.raise_for_status()
        return response

    def add_user(self, user: str, password: str, tags: str = "") -> str:
        """A user with every permission on ``/``; the broker URL it connects with."""
        self.api("PUT", f"users/{user}", {"password": password, "tags": tags})
        self.api("PUT", f"permissions/%2F/{user}", {"configure": ".*", "write": ".*", "read": ".*"})
        return f"amqp://{user}:{password}@127.0.0.1:{self.port}//"

    def start(self, wait: bool = True) -> RabbitMQServer:
        home = self.processes.run_dir / self.name
        home.mkdir(parents=True, exist_ok=True)
        plugins = "[rabbitmq_management]." if self.management else "[]."
        (home / "enabled_plugins").write_text(plugins + "\n")
        conf = [f"listeners.tcp.default = 127.0.0.1:{self.port}", "loopback_users = none"]
        if self.management:
            conf += [
                f"management.tcp.port = {self.management_port}",
                "management.tcp.ip = 127.0.0.1",
                "collect_statistics_interval = 500",
            ]
        (home / "rabbitmq.conf").write_text("\n".join(conf) + "\n")
        (home / "rabbitmq-env.conf").write_text("")
        env = {
            # Its own Erlang cookie and nothing from /etc/rabbitmq (the machine's node's).
            "HOME": str(home),
            "RABBITMQ_CONF_ENV_FILE": str(home / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
            "RABBITMQ_NODENAME": f"{self.name}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
            "RABBITMQ_LOG_BASE": str(home / "log"),
            "RABBITMQ_LOGS": "-",
            "RABBITMQ_PID_FILE": str(home / "pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        spec = ProcessSpec(self.name, [SERVER], ready=self._answers, ready_timeout=READY_TIMEOUT)
        self.child = self.processes.start(
            spec, env, label=f"rabbitmq-server on {self.port}", wait=wait
        )
        return self

    def wait_ready(self) -> RabbitMQServer:
        assert self.child is not None
        self.child.wait_ready()
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
            if self.management:
                httpx.get(
                    f"{self.management_url}/api/overview", auth=GUEST, timeout=2
                ).raise_for_status()
        except (OSError, httpx.HTTPError):
            return False
        return True

    def log(self) -> str:
        return self.child.log() if self.child is not None else ""

    def kill(self) -> None:
        """Stop it at once: a test's node keeps nothing worth a clean shutdown (seconds)."""
        if self.child is not None:
            self.child.kill()
