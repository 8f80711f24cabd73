"""Time series from the Prometheus HTTP API (instant queries)."""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pandas as pd

from console.sources import SourceDown

NAME = "Prometheus"


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


class Prometheus:
    """Any PromQL HTTP API (Prometheus, VictoriaMetrics, Thanos Query, Mimir under its
    /prometheus prefix): only /api/v1/query and /api/v1/query_range are used.

    ``app`` is the app the console shows (console/apps.py; None: all): every query built from
    this client picks that app's series (``console.metrics`` reads it)."""

    def __init__(
        self,
        url: str,
        timeout: float = 3.0,
        *,
        app: str | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.app = app
        # One pooled client: a fresh one per request costs a TLS context and a connection.
        self.http = http if http is not None else httpx.Client(timeout=timeout)

    def for_app(self, app: str | None) -> Prometheus:
        """The same endpoint and connections, scoped to ``app``."""
        return Prometheus(self.url, self.timeout, app=app, http=self.http)

    def query(self, expr: str) -> list[Sample]:
        try:
            response = self.http.get(f"{self.url}/api/v1/query", params={"query": expr})
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SourceDown(NAME, f"{self.url}: {exc}") from exc
        if body.get("status") != "success":
            raise SourceDown(NAME, f"{expr}: {body.get('errorType')}: {body.get('error')}")
        return [
            Sample(series["metric"], float(series["value"][1])) for series in body["data"]["result"]
        ]

    def many(self, exprs: dict[str, str], label: str) -> dict[str, dict[str, float]]:
        """Several ``by_label`` queries at once: a page waits for the slowest, not the sum."""
        with ThreadPoolExecutor(max_workers=min(8, len(exprs))) as pool:
            futures = {key: pool.submit(self.by_label, expr, label) for key, expr in exprs.items()}
            return {key: future.result() for key, future in futures.items()}

    def many_by(
        self, exprs: dict[str, str], labels: tuple[str, ...]
    ) -> dict[str, dict[tuple[str, ...], float]]:
        """``many`` keyed by several labels' values (e.g. app and queue)."""
        with ThreadPoolExecutor(max_workers=min(8, len(exprs))) as pool:
            futures = {
                key: pool.submit(self.by_labels, expr, labels) for key, expr in exprs.items()
            }
            return {key: future.result() for key, future in futures.items()}

    def by_labels(self, expr: str, labels: tuple[str, ...]) -> dict[tuple[str, ...], float]:
        """One number per combination of ``labels``' values (NaN samples dropped)."""
        return {
            tuple(sample.labels.get(label, "") for label in labels): sample.value
            for sample in self.query(expr)
            if not math.isnan(sample.value)
        }

    def by_label(self, expr: str, label: str) -> dict[str, float]:
        """One number per value of ``label`` (NaN samples dropped: nothing to show)."""
        return {
            sample.labels.get(label, ""): sample.value
            for sample in self.query(expr)
            if not math.isnan(sample.value)
        }


def range_frame(
    prom: Prometheus, expr: str, label: str | tuple[str, ...], *, seconds: float, step: float
) -> pd.DataFrame:
    """A range query as a pandas frame: one column per ``label`` value, indexed by time (with
    several labels, their non-empty values joined by " @ ", e.g. "images @ billing")."""
    end = time.time()
    try:
        response = prom.http.get(
            f"{prom.url}/api/v1/query_range",
            params={"query": expr, "start": end - seconds, "end": end, "step": step},
        )
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise SourceDown(NAME, f"{prom.url}: {exc}") from exc
    if body.get("status") != "success":
        raise SourceDown(NAME, f"{expr}: {body.get('errorType')}: {body.get('error')}")
    columns = {}
    for series in body["data"]["result"]:
        points = {pd.Timestamp(float(t), unit="s", tz="UTC"): float(v) for t, v in series["values"]}
        labels = (label,) if isinstance(label, str) else label
        values = [series["metric"].get(name, "") for name in labels]
        columns[" @ ".join(v for v in values if v)] = pd.Series(points)
    return pd.DataFrame(columns)
