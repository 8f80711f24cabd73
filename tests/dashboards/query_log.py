"""An HTTP pass-through in front of a PromQL endpoint that notes every query sent through it.

Not a fake: every request goes to the real store and its real answer comes back unchanged. It
lets a test list the exact PromQL a console page sent, to run each one against another store."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import httpx

QUERY_PATHS = ("/api/v1/query", "/api/v1/query_range")


class QueryLog:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.queries: list[str] = []
        self._client = httpx.Client(timeout=60)  # pooled: the pages send dozens of queries
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> QueryLog:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()

    def _note(self, path: str, params: list[tuple[str, str]]) -> None:
        if path in QUERY_PATHS:
            with self._lock:
                self.queries += [value for key, value in params if key == "query"]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        log = self

        class Forward(BaseHTTPRequestHandler):
            def _forward(self, body: bytes | None) -> None:
                parts = urlsplit(self.path)
                params = parse_qsl(parts.query)
                if body:
                    params += parse_qsl(body.decode("utf-8", "replace"))
                log._note(parts.path, params)
                headers = {"Content-Type": self.headers.get("Content-Type", "")} if body else {}
                answer = log._client.request(
                    self.command,
                    log.upstream + self.path,
                    content=body,
                    headers=headers,
                )
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("Content-Type", ""))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def do_GET(self) -> None:
                self._forward(None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self._forward(self.rfile.read(length))

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Forward
