"""A STAND-IN FOR GRAFANA, for tests only: Grafana cannot be installed on our machines.

It serves the handful of HTTP API endpoints `fleetops dashboards provision` uses (health,
folders, data sources, dashboards) with Grafana's status codes and response shapes, keeps what
it is sent in memory, and records every call so tests can assert the exact payloads
grafana-client sends.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Call:
    method: str
    path: str
    body: Any
    authorization: str | None


@dataclass
class GrafanaStandIn:
    token: str = "service-account-token"
    user: str = "admin"
    password: str = "admin-password"
    # "grafana": behave like Grafana; "not-grafana": 404 everywhere (a wrong URL);
    # "broken": 500 on every API call but health; "viewer": 403 on writes.
    mode: str = "grafana"
    calls: list[Call] = field(default_factory=list)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> GrafanaStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                standin.calls.append(
                    Call(self.command, self.path, body, self.headers.get("Authorization"))
                )
                status, payload = standin.respond(
                    self.command, self.path, body, self.headers.get("Authorization")
                )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def writes(self) -> list[Call]:
        return [call for call in self.calls if call.method != "GET"]

    def _authorized(self, authorization: str | None) -> bool:
        basic = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return authorization in (f"Bearer {self.token}", f"Basic {basic}")

    def respond(
        self, method: str, path: str, body: Any, authorization: str | None
    ) -> tuple[int, Any]:
        if self.mode == "not-grafana":
            return 404, {"message": "Not found"}
        if path == "/api/health":
            return 200, {"commit": "standin", "database": "ok", "version": "11.6.0"}
        if self.mode == "broken":
            return 500, {"message": "Internal Server Error"}
        if not self._authorized(authorization):
            return 401, {"message": "Unauthorized"}
        if self.mode == "viewer" and method != "GET":
            return 403, {"message": "Access denied"}
        parts = path.strip("/").split("/")[1:]  # drop "api"
        if parts[0] == "folders":
            return self._folders(method, parts[1:], body)
        if parts[0] == "datasources":
            return self._datasources(method, parts[1:], body)
        if parts[0] == "dashboards":
            return self._dashboards(method, parts[1:], body)
        return 404, {"message": "Not found"}

    def _folders(self, method: str, rest: list[str], body: Any) -> tuple[int, Any]:
        if method == "POST" and not rest:
            folder = {"id": len(self.folders) + 1, "uid": body["uid"], "title": body["title"]}
            self.folders[body["uid"]] = folder | {"version": 1}
            return 200, self.folders[body["uid"]]
        uid = rest[0]
        if uid not in self.folders:
            return 404, {"message": "folder not found", "status": "not-found"}
        if method == "PUT":
            self.folders[uid]["title"] = body["title"]
            self.folders[uid]["version"] += 1
        return 200, self.folders[uid]

    def _datasources(self, method: str, rest: list[str], body: Any) -> tuple[int, Any]:
        if method == "POST" and not rest:
            stored = {"id": len(self.datasources) + 1, "orgId": 1, "basicAuth": False} | body
            self.datasources[body["uid"]] = stored
            return 200, {"datasource": stored, "id": stored["id"], "message": "Datasource added"}
        uid = rest[1]  # uid/<uid>
        if uid not in self.datasources:
            return 404, {"message": "Data source not found"}
        if method == "PUT":
            self.datasources[uid] = self.datasources[uid] | body
            return 200, {"datasource": self.datasources[uid], "message": "Datasource updated"}
        return 200, self.datasources[uid]

    def _dashboards(self, method: str, rest: list[str], body: Any) -> tuple[int, Any]:
        if method == "POST" and rest == ["db"]:
            dashboard = copy.deepcopy(body["dashboard"])
            previous = self.dashboards.get(dashboard["uid"])
            dashboard["id"] = previous["dashboard"]["id"] if previous else len(self.dashboards) + 1
            dashboard["version"] = previous["dashboard"]["version"] + 1 if previous else 1
            self.dashboards[dashboard["uid"]] = {
                "dashboard": dashboard,
                "meta": {"folderUid": body.get("folderUid", ""), "provisioned": False},
            }
            return 200, {"id": dashboard["id"], "uid": dashboard["uid"], "status": "success"}
        uid = rest[1]  # uid/<uid>
        if uid not in self.dashboards:
            return 404, {"message": "Dashboard not found"}
        return 200, self.dashboards[uid]
