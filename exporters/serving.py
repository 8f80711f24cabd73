"""HTTP of the exporter and of the recorder: ``/metrics`` from memory, ``/healthz`` for probes
(503 with the reason when a part has stopped making progress), an index page for people."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
INDEX = """<html><head><title>fleetops {title}</title></head><body>
<h1>fleetops {title}</h1><p><a href="/metrics">/metrics</a> &middot;
<a href="/healthz">/healthz</a></p></body></html>"""


def answer(handler: BaseHTTPRequestHandler, code: int, content_type: str, body: bytes) -> None:
    """Send a whole response. Content-Length lets a keep-alive client find where it ends."""
    handler.send_response(code)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class MetricsServer:
    def __init__(
        self,
        host: str,
        port: int,
        render: Callable[[frozenset[str] | None], bytes],
        health: Callable[[], tuple[bool, str]],
        title: str = "exporter",
    ) -> None:
        index = INDEX.format(title=title).encode()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                if path == "/metrics":
                    names = parse_qs(query).get("name[]")
                    answer(self, 200, CONTENT_TYPE, render(frozenset(names) if names else None))
                elif path == "/healthz":
                    try:
                        healthy, text = health()
                    except Exception as exc:  # a health check that fails is an unhealthy answer
                        healthy, text = False, f"unhealthy: health check failed: {exc!r}"
                    answer(self, 200 if healthy else 503, "text/plain", text.encode() + b"\n")
                elif path == "/":
                    answer(self, 200, "text/html", index)
                else:
                    answer(self, 404, "text/plain", b"not found\n")

            def log_message(self, format: str, *args: object) -> None:
                log.debug("%s %s", self.address_string(), format % args)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, name="http", kwargs={"poll_interval": 0.5}, daemon=True
        )

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def listen_or_exit(
    who: str,
    host: str,
    port: int,
    render: Callable[[frozenset[str] | None], bytes],
    health: Callable[[], tuple[bool, str]],
) -> MetricsServer:
    """The server of a ``fleetops`` command; a port that is taken ends it with status 2 and a
    line that names the address, instead of a traceback."""
    import typer

    try:
        return MetricsServer(host, port, render, health, title=who)
    except OSError as exc:
        typer.echo(f"fleetops {who}: cannot listen on {host}:{port}: {exc.strerror or exc}",
                   err=True)  # fmt: skip
        raise typer.Exit(2) from exc
