"""A local pager: an Alertmanager webhook receiver that logs every page with its runbook link.

It stands in for PagerDuty on a laptop, so a newcomer running the fleet sees an alert arrive
with the link to what to do. Endpoints:

- ``POST /page``, ``/ticket``, ``/watchdog`` (any path): an Alertmanager webhook payload;
  every alert in it is logged on one line and appended to the JSON-lines log.
- ``GET /pages``: the most recent notifications received (JSON, newest last).
- ``GET /runbooks/<AlertName>.md``: the runbook, so ``runbook_url`` resolves locally.
- ``GET /healthz``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson

from exporters.serving import answer
from fleetops.apps import APP_LABEL

log = logging.getLogger("fleetops.pager")

RUNBOOK_PATH = re.compile(r"^/runbooks/([A-Za-z0-9]+\.md)$")
DEFAULT_RUNBOOKS_DIR = Path(__file__).resolve().parent.parent / "runbooks"
MAX_BODY_BYTES = 4 * 1024 * 1024


class PayloadError(ValueError):
    pass


@dataclass
class Page:
    """One alert of one notification, as the person on call reads it."""

    channel: str
    status: str
    alertname: str
    severity: str
    labels: dict[str, str]
    summary: str
    description: str
    runbook_url: str
    dashboard_url: str
    starts_at: str
    received_at: float = field(default_factory=time.time)

    def line(self) -> str:
        scope = " ".join(
            f"{key}={value}"
            for key, value in sorted(self.labels.items())
            if key in (APP_LABEL, "queue_name", "hostname", "name", "instance")
        )
        return (
            f"{self.channel.upper()} {self.status.upper()} {self.alertname}"
            f" [{self.severity}] {scope} - {self.summary} {self.description}"
            f" | runbook: {self.runbook_url or '(none)'} | dashboard: {self.dashboard_url or '-'}"
        )


def parse_notification(channel: str, body: bytes) -> list[Page]:
    """The pages in one Alertmanager webhook payload (version 4)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"body is not JSON: {exc}") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise PayloadError("not an Alertmanager webhook payload: no 'alerts' list")
    pages = []
    for alert in payload["alerts"]:
        if not isinstance(alert, dict):
            raise PayloadError("an entry of 'alerts' is not an object")
        labels = {str(k): str(v) for k, v in (alert.get("labels") or {}).items()}
        annotations = {str(k): str(v) for k, v in (alert.get("annotations") or {}).items()}
        pages.append(
            Page(
                channel=channel,
                status=str(alert.get("status") or payload.get("status") or "unknown"),
                alertname=labels.get("alertname", "(unnamed)"),
                severity=labels.get("severity", "(none)"),
                labels=labels,
                summary=annotations.get("summary", ""),
                description=annotations.get("description", ""),
                runbook_url=annotations.get("runbook_url", ""),
                dashboard_url=annotations.get("dashboard_url", ""),
                starts_at=str(alert.get("startsAt", "")),
            )
        )
    return pages


class PageBook:
    """Pages received: a bounded memory for ``GET /pages`` and an append-only log file."""

    def __init__(self, log_file: Path | None, keep: int = 1000) -> None:
        self.recent: deque[Page] = deque(maxlen=keep)
        self.log_file = log_file
        self.lock = threading.Lock()
        if log_file is not None:
            log_file.parent.mkdir(parents=True, exist_ok=True)

    def record(self, pages: list[Page]) -> None:
        with self.lock:
            self.recent.extend(pages)
            if self.log_file is not None:
                with self.log_file.open("ab") as out:
                    for page in pages:
                        out.write(orjson.dumps(page.__dict__) + b"\n")
        for page in pages:
            log.info("%s", page.line())

    def as_json(self) -> bytes:
        with self.lock:
            return orjson.dumps([page.__dict__ for page in self.recent])


def make_handler(book: PageBook, runbooks_dir: Path) -> type[BaseHTTPRequestHandler]:
    class PagerHandler(BaseHTTPRequestHandler):
        server_version = "fleetops-pager"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"payload too large\n")
                return
            body = self.rfile.read(length)
            channel = self.path.strip("/").split("?")[0] or "page"
            try:
                pages = parse_notification(channel, body)
            except PayloadError as exc:
                log.warning("rejected a notification on %s: %s", self.path, exc)
                self._reply(HTTPStatus.BAD_REQUEST, f"{exc}\n".encode())
                return
            book.record(pages)
            self._reply(HTTPStatus.OK, b"ok\n")

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._reply(HTTPStatus.OK, b"ok\n")
            elif self.path == "/pages":
                self._reply(HTTPStatus.OK, book.as_json(), "application/json")
            elif match := RUNBOOK_PATH.match(self.path):
                path = runbooks_dir / match.group(1)
                if path.is_file():
                    self._reply(HTTPStatus.OK, path.read_bytes(), "text/markdown; charset=utf-8")
                else:
                    self._reply(HTTPStatus.NOT_FOUND, f"no runbook {match.group(1)}\n".encode())
            else:
                self._reply(HTTPStatus.NOT_FOUND, b"not found\n")

        def _reply(self, status: HTTPStatus, body: bytes, content_type: str = "text/plain") -> None:
            answer(self, status, content_type, body)

        def log_message(self, format: str, *args: object) -> None:
            # Access logs would drown the pages; those are logged by PageBook.
            pass

    return PagerHandler


def serve(host: str, port: int, log_file: Path | None, runbooks_dir: Path) -> None:
    book = PageBook(log_file)
    server = ThreadingHTTPServer((host, port), make_handler(book, runbooks_dir))
    log.info(
        "pager listening on http://%s:%d (POST /page, /ticket, /watchdog; GET /pages,"
        " /runbooks/<AlertName>.md)",
        host,
        server.server_port,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
