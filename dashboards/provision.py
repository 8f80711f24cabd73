"""Provision Grafana through its HTTP API with grafana-client: a folder, a Prometheus data
source and every dashboard, each created when missing, updated when different and left alone
when equal, so running it twice changes nothing."""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import niquests
from grafana_client import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaServerError,
    GrafanaTimeoutError,
    GrafanaUnauthorizedError,
)
from grafana_foundation_sdk.models import dashboard as models

from dashboards.build import render

Credential = str | tuple[str, str]
COMMIT_MESSAGE = "Provisioned by fleetops dashboards provision"
# What is left once Grafana's own answers are handled: the request did not get through.
TRANSPORT_ERRORS = (GrafanaException, niquests.exceptions.RequestException)
# Keys Grafana owns on a stored dashboard; they differ from ours without any real change.
SERVER_OWNED_KEYS = ("id", "version")


class ProvisionError(Exception):
    """A problem the person running the command can act on, named plainly."""


@dataclass(frozen=True)
class ProvisionTarget:
    folder_uid: str
    folder_title: str
    datasource_uid: str
    datasource_name: str
    prometheus_url: str
    # Prometheus' scrape interval: Grafana derives $__rate_interval from it.
    scrape_interval: str = "15s"


@dataclass(frozen=True)
class Outcome:
    kind: str  # folder | datasource | dashboard
    name: str
    action: str  # created | updated | unchanged


def credential_from(
    token: str | None = None, user: str | None = None, password: str | None = None
) -> Credential:
    if token and (user or password):
        raise ProvisionError("give either --token or --user/--password, not both")
    if token:
        return token
    if user and password:
        return (user, password)
    if user or password:
        raise ProvisionError("--user and --password go together; one of them is missing")
    raise ProvisionError(
        "no Grafana credentials: give --token (a service account token) or --user and --password"
    )


def datasource_payload(target: ProvisionTarget) -> dict[str, Any]:
    return {
        "uid": target.datasource_uid,
        "name": target.datasource_name,
        "type": "prometheus",
        "access": "proxy",
        "url": target.prometheus_url,
        "isDefault": False,
        "jsonData": {"httpMethod": "POST", "timeInterval": target.scrape_interval},
    }


def dashboard_payload(dashboard: models.Dashboard, target: ProvisionTarget) -> dict[str, Any]:
    """The dashboard JSON, opening on the provisioned data source."""
    payload = json.loads(render(dashboard))
    for variable in payload.get("templating", {}).get("list", []):
        if variable.get("type") == "datasource":
            variable["current"] = {"text": target.datasource_name, "value": target.datasource_uid}
    return payload


def _transport_reason(exc: Exception, url: str) -> str:
    """The one fact a person needs from a transport error's long chain."""
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused (nothing listens there)"
    if "NameResolutionError" in text or "Name or service not known" in text:
        return f"host name {urlparse(url).hostname!r} does not resolve"
    if "timed out" in text.lower():
        return "connection timed out"
    return text


def _differs(wanted: dict[str, Any], stored: dict[str, Any]) -> bool:
    return any(stored.get(key) != value for key, value in wanted.items())


def _comparable(dashboard: dict[str, Any]) -> dict[str, Any]:
    kept = copy.deepcopy(dashboard)
    for key in SERVER_OWNED_KEYS:
        kept.pop(key, None)
    return kept


class Provisioner:
    def __init__(self, api: GrafanaApi, url: str) -> None:
        self.api = api
        self.url = url

    @classmethod
    def connect(cls, url: str, credential: Credential, timeout: float = 10.0) -> Provisioner:
        """Check the URL and that a Grafana answers there, before changing anything."""
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ProvisionError(
                f"--grafana-url {url!r} is not an http(s) URL (expected e.g. http://grafana:3000)"
            )
        provisioner = cls(GrafanaApi.from_url(url, credential, timeout=timeout), url)
        provisioner._check_health()
        return provisioner

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn grafana-client and transport exceptions into one sentence naming the cause."""
        try:
            yield
        except GrafanaUnauthorizedError as exc:
            raise ProvisionError(
                f"Grafana at {self.url} refused the credentials while {doing} (401"
                f" Unauthorized): check --token, or --user and --password"
            ) from exc
        except GrafanaTimeoutError as exc:
            raise ProvisionError(
                f"Grafana at {self.url} did not answer in time while {doing}"
            ) from exc
        except GrafanaServerError as exc:
            raise ProvisionError(
                f"Grafana at {self.url} failed while {doing}: {exc.message}"
            ) from exc
        except GrafanaClientError as exc:
            if exc.status_code == 403:
                raise ProvisionError(
                    f"Grafana at {self.url} denied {doing} (403 Forbidden): the account needs"
                    " the Editor role on the folder and Admin to manage data sources"
                ) from exc
            raise ProvisionError(f"Grafana at {self.url} rejected {doing}: {exc.message}") from exc
        except TRANSPORT_ERRORS as exc:
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: Exception) -> ProvisionError:
        return ProvisionError(
            f"cannot reach Grafana at {self.url} (is it running, is the URL right?):"
            f" {_transport_reason(exc, self.url)}"
        )

    def _check_health(self) -> None:
        # /api/health needs no credentials, so a failure here is about the URL or the server.
        try:
            health = self.api.client.GET("/health")
        except GrafanaClientError as exc:
            raise ProvisionError(
                f"{self.url} does not look like Grafana: {self.url.rstrip('/')}/api/health"
                f" answered {exc.status_code}; check --grafana-url (and any path prefix)"
            ) from exc
        except GrafanaServerError as exc:
            raise ProvisionError(f"Grafana at {self.url} is not healthy: {exc.message}") from exc
        except TRANSPORT_ERRORS as exc:
            raise self._unreachable(exc) from exc
        if not isinstance(health, dict) or health.get("database") not in (None, "ok"):
            raise ProvisionError(f"Grafana at {self.url} reports an unhealthy database: {health}")

    def _get_or_none(self, getter: Any, *args: Any) -> dict[str, Any] | None:
        try:
            return getter(*args)
        except GrafanaClientError as exc:
            if exc.status_code == 404:
                return None
            raise

    def ensure_folder(self, target: ProvisionTarget) -> Outcome:
        folders = self.api.folder
        with self._errors(f"reading folder {target.folder_uid!r}"):
            folder = self._get_or_none(folders.get_folder, target.folder_uid)
        if folder is None:
            with self._errors(f"creating folder {target.folder_uid!r}"):
                folders.create_folder(target.folder_title, uid=target.folder_uid)
            return Outcome("folder", target.folder_title, "created")
        if folder.get("title") == target.folder_title:
            return Outcome("folder", target.folder_title, "unchanged")
        with self._errors(f"renaming folder {target.folder_uid!r}"):
            folders.update_folder(target.folder_uid, title=target.folder_title, overwrite=True)
        return Outcome("folder", target.folder_title, "updated")

    def ensure_datasource(self, target: ProvisionTarget) -> Outcome:
        sources = self.api.datasource
        wanted = datasource_payload(target)
        with self._errors(f"reading data source {target.datasource_uid!r}"):
            stored = self._get_or_none(sources.get_datasource_by_uid, target.datasource_uid)
        if stored is None:
            with self._errors(f"creating data source {target.datasource_name!r}"):
                sources.create_datasource(wanted)
            return Outcome("datasource", target.datasource_name, "created")
        if not _differs(wanted, stored):
            return Outcome("datasource", target.datasource_name, "unchanged")
        with self._errors(f"updating data source {target.datasource_name!r}"):
            sources.update_datasource_by_uid(target.datasource_uid, wanted)
        return Outcome("datasource", target.datasource_name, "updated")

    def ensure_dashboard(self, dashboard: models.Dashboard, target: ProvisionTarget) -> Outcome:
        wanted = dashboard_payload(dashboard, target)
        uid, title = wanted["uid"], wanted["title"]
        with self._errors(f"reading dashboard {uid!r}"):
            stored = self._get_or_none(self.api.dashboard.get_dashboard, uid)
        if stored is not None:
            same_folder = stored.get("meta", {}).get("folderUid") == target.folder_uid
            same_content = _comparable(stored.get("dashboard", {})) == _comparable(wanted)
            if same_folder and same_content:
                return Outcome("dashboard", title, "unchanged")
        with self._errors(f"saving dashboard {uid!r}"):
            self.api.dashboard.update_dashboard(
                {
                    "dashboard": {**wanted, "id": None},
                    "folderUid": target.folder_uid,
                    "overwrite": True,
                    "message": COMMIT_MESSAGE,
                }
            )
        return Outcome("dashboard", title, "created" if stored is None else "updated")

    def provision(
        self, target: ProvisionTarget, dashboards: list[models.Dashboard]
    ) -> list[Outcome]:
        outcomes = [self.ensure_folder(target), self.ensure_datasource(target)]
        outcomes += [self.ensure_dashboard(dashboard, target) for dashboard in dashboards]
        return outcomes
