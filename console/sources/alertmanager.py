"""Alerts and silences from the Alertmanager API v2."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from console.sources import SourceDown

NAME = "Alertmanager"


@dataclass(frozen=True)
class Alert:
    name: str
    state: str  # active, suppressed, unprocessed
    severity: str
    labels: dict[str, str]
    summary: str
    starts_at: str
    silenced_by: list[str]


class Alertmanager:
    def __init__(self, url: str, timeout: float = 3.0) -> None:
        self.url = url.rstrip("/") + "/api/v2"
        self.timeout = timeout
        self.http = httpx.Client(timeout=timeout)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, self.url + path, **kwargs)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise SourceDown(NAME, f"{self.url}{path}: {exc}") from exc
        return response.json() if response.content else None

    def alerts(self) -> list[Alert]:
        """Firing alerts, including silenced and inhibited ones (their state says which)."""
        found = []
        for raw in self._call("GET", "/alerts", params={"silenced": "true", "inhibited": "true"}):
            labels = raw.get("labels", {})
            found.append(
                Alert(
                    name=labels.get("alertname", "?"),
                    state=raw.get("status", {}).get("state", "unknown"),
                    severity=labels.get("severity", ""),
                    labels=labels,
                    summary=raw.get("annotations", {}).get("summary", ""),
                    starts_at=raw.get("startsAt", ""),
                    silenced_by=list(raw.get("status", {}).get("silencedBy") or []),
                )
            )
        return sorted(found, key=lambda alert: (alert.state != "active", alert.name))

    def silences(self) -> list[dict[str, Any]]:
        return [s for s in self._call("GET", "/silences") if s["status"]["state"] != "expired"]

    def create_silence(
        self, matchers: dict[str, str], *, hours: float, author: str, comment: str
    ) -> str:
        now = datetime.now(UTC)
        body = {
            "matchers": [
                {"name": k, "value": v, "isRegex": False, "isEqual": True}
                for k, v in matchers.items()
            ],
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(hours=hours)).isoformat(),
            "createdBy": author,
            "comment": comment,
        }
        return self._call("POST", "/silences", json=body)["silenceID"]

    def expire_silence(self, silence_id: str) -> None:
        self._call("DELETE", f"/silence/{silence_id}")
