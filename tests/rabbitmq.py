"""RabbitMQ nodes of the tests' own, on free loopback ports.

Tests that only need a broker share one node per session (the ``rabbitmq_node`` fixture in
tests/conftest.py, started by the first test that asks for it: a node takes 10 to 50 s to boot
here), each in a virtual host of its own (``Vhost``), created and deleted through the
management HTTP API (milliseconds; ``rabbitmqctl`` boots an Erlang VM per call). Tests that
stop, kill or restart the broker start a ``RabbitMQServer`` of their own."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx

from fleetops.fleet.spec import ProcessSpec, free_port
from tests.processes import Child, Processes

GUEST = ("guest", "guest")


def missing() -> str | None:
    """Why no node of our own can start here, or None."""
    if not os.access(SERVER, os.X_OK):
        return f"{SERVER} not installed"
    if shutil.which("bash") is None:
        return "bash not installed"
    return None


# The server itself, without the Debian wrapper (which switches to the rabbitmq user and the
# system's configuration).
SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
# The node under bash, beside a watcher that kills the process group once {parent} is gone.
WATCHED = (
    '"{server}" & server=$!; '
    "(while kill -0 {parent} 2>/dev/null; do sleep 1; done; kill -KILL 0) & "
    'wait "$server"'
)
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
    # For a node that outlives single tests: it dies with this Python process, even one killed
    # without its teardown running (SIGKILL, a lost terminal), instead of running on unseen.
    watch_parent: bool = False
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
        command = [SERVER]
        if self.watch_parent:
            # bash waits for the server (its exit code is the node's, so a dead node is seen at
            # once); a watcher beside it kills the whole process group once we are gone.
            command = ["bash", "-c", WATCHED.format(server=SERVER, parent=os.getpid())]
        spec = ProcessSpec(self.name, command, ready=self._answers, ready_timeout=READY_TIMEOUT)
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

    def alive(self) -> bool:
        """True while it runs; ProcessExited with the end of its log once it has died."""
        assert self.child is not None, "the node was never started"
        return self.child.alive()

    @contextlib.contextmanager
    def vhost(self) -> Iterator[Vhost]:
        """A fresh virtual host (and the users made for it), deleted at the end; ProcessExited
        with the node's log if the node has died, before or during its use."""
        self.alive()
        vhost = Vhost(self, f"t-{uuid.uuid4().hex[:10]}")
        self.api("PUT", f"vhosts/{vhost.quoted}")
        vhost.grant("guest")
        try:
            yield vhost
        finally:
            self.alive()
            vhost.delete()

    def kill(self) -> None:
        """Stop it at once: a test's node keeps nothing worth a clean shutdown (seconds)."""
        if self.child is not None:
            self.child.kill()


@dataclass
class Vhost:
    """A virtual host of its own on a shared node: what one test or module sees of RabbitMQ."""

    server: RabbitMQServer
    name: str
    users: list[str] = field(default_factory=list)

    @property
    def quoted(self) -> str:
        return quote(self.name, safe="")

    @property
    def url(self) -> str:
        """The AMQP URL of the administrator ``guest`` in this virtual host."""
        return self.url_of("guest", "guest")

    @property
    def management_url(self) -> str:
        return self.server.management_url

    def url_of(self, user: str, password: str) -> str:
        return f"amqp://{user}:{password}@127.0.0.1:{self.server.port}/{self.quoted}"

    def api(self, method: str, path: str, json: object = None) -> httpx.Response:
        return self.server.api(method, path, json)

    def alive(self) -> bool:
        """True while the node runs; ProcessExited with its log once it has died (a wait_for
        predicate stops waiting on that)."""
        return self.server.alive()

    def grant(self, user: str) -> None:
        every = {"configure": ".*", "write": ".*", "read": ".*"}
        self.api("PUT", f"permissions/{self.quoted}/{quote(user, safe='')}", every)

    def add_user(self, user: str, password: str, tags: str = "") -> str:
        """A user of this virtual host only (its name prefixed with the host's: users are the
        node's, shared by every test); the URL it connects with."""
        name = f"{self.name}-{user}"
        self.api("PUT", f"users/{quote(name, safe='')}", {"password": password, "tags": tags})
        self.users.append(name)
        self.grant(name)
        return self.url_of(name, password)

    def delete(self) -> None:
        """The virtual host with its queues and messages, and its users."""
        self.api("DELETE", f"vhosts/{self.quoted}")
        for user in self.users:
            self.api("DELETE", f"users/{quote(user, safe='')}")
