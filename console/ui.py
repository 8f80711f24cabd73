"""What every page shares: its context (settings, sources, thresholds), banners and bands."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TypeVar

import altair as alt
import streamlit as st
from celery import Celery
from sqlalchemy import Engine

from console import actions, auth, links
from console.charts import Bands
from console.settings import ConsoleSettings, load
from console.sources import SourceDown, control, history
from console.sources.alertmanager import Alertmanager
from console.sources.prometheus import Prometheus
from fleetops import breaking_points
from fleetops.breaking_points import BreakingPoints, Level
from fleetops.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Context:
    settings: ConsoleSettings
    points: BreakingPoints
    prometheus: Prometheus
    alertmanager: Alertmanager

    @property
    def history(self) -> Engine:
        return history.engine_for(self.settings.effective_history_database_url)

    @property
    def celery(self) -> Celery:
        return control.app_for(self.settings.broker_url)


def page(title: str) -> Context:
    """Start a page: its title, the login sidebar and the sources, or a clear config error."""
    st.title(title)
    try:
        settings = load()
        points = breaking_points.current()
    except ConfigError as exc:
        st.error(f"Configuration error: {exc}")
        st.stop()
    auth.sidebar(settings)
    actions.show_outcomes()
    timeout = settings.console_source_timeout
    return Context(
        settings=settings,
        points=points,
        prometheus=_prometheus(settings.prometheus_url, timeout),
        alertmanager=_alertmanager(settings.alertmanager_url, timeout),
    )


@cache
def _prometheus(url: str, timeout: float) -> Prometheus:
    # Shared by every session and rerun, so connections to the source are reused.
    return Prometheus(url, timeout)


@cache
def _alertmanager(url: str, timeout: float) -> Alertmanager:
    return Alertmanager(url, timeout)


def fetch(call: Callable[[], T]) -> T | None:
    """The value, or None after a banner naming the source that is down."""
    try:
        return call()
    except SourceDown as exc:
        st.error(str(exc), icon="🚨")
        return None


def band(level: Level | None) -> str:
    # Plain words: emoji are missing from many server and kiosk fonts.
    return "n/a" if level is None else level.value


def runbook_link(alert_name: str) -> str:
    return links.markdown("runbook", links.runbook(alert_name))


def chart(drawn: alt.TopLevelMixin, *, key: str, description: str) -> None:
    """A chart with its key (tests find it) and a sentence for screen readers."""
    st.altair_chart(drawn, key=key, alt=description, width="stretch")


def bands_text(bands: Bands) -> str:
    return (
        f"{bands.title} bands: warning ≥ {bands.warning:g}, critical ≥ {bands.critical:g}, "
        f"breaking ≥ {bands.breaking:g} {bands.unit}."
    )
