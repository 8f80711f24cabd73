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

from console import actions, apps, auth, links, metrics
from console.charts import Bands
from console.settings import ConsoleSettings, load
from console.sources import SourceDown, control, history
from console.sources.alertmanager import Alert, Alertmanager
from console.sources.prometheus import Prometheus
from fleetops import breaking_points
from fleetops.breaking_points import BreakingPoints, Level
from fleetops.errors import ConfigError

T = TypeVar("T")


class NoBroker(SourceDown):
    """No single app is chosen, so there is no broker to read or act on."""


@dataclass(frozen=True)
class Context:
    settings: ConsoleSettings
    points: BreakingPoints
    prometheus: Prometheus  # scoped to the chosen app (console/apps.py)
    alertmanager: Alertmanager
    apps: apps.AppChoice

    @property
    def app(self) -> str | None:
        """The chosen app, None for all apps."""
        return self.apps.selected

    @property
    def per_app(self) -> bool:
        """Several apps shown at once: queues and workers are told apart by app, one row per
        (app, name), never one sum of same-named queues or workers."""
        return self.apps.several and self.apps.selected is None

    @property
    def history(self) -> Engine:
        return history.engine_for(self.settings.effective_history_database_url)

    def alerts(self) -> list[Alert]:
        """Alertmanager's alerts of the chosen app (all of them with all apps)."""
        return [alert for alert in self.alertmanager.alerts() if apps.shows(alert.labels, self.app)]

    def read_history(self, query: Callable[..., T], *args: object, **kwargs: object) -> T:
        """One history query of the chosen app (``history.call`` passes the app)."""
        return history.call(self.history, query, *args, app=self.app, **kwargs)

    @property
    def celery(self) -> Celery:
        """The chosen app's broker; raises NoBroker when no single app is chosen."""
        acting = self.apps.acting
        if acting is None:
            raise NoBroker(control.NAME, self.apps.refusal() or "no app chosen")
        return control.app_for(acting.broker_url)


def page(title: str) -> Context:
    """Start a page: its title, the login sidebar and the sources, or a clear config error."""
    st.title(title)
    try:
        settings = load()
        points = breaking_points.current()
    except ConfigError as exc:
        st.error(f"Configuration error: {exc}")
        st.stop()
    timeout = settings.console_source_timeout
    prometheus = _prometheus(settings.prometheus_url, timeout)
    chosen = app_sidebar(settings, points, prometheus)
    auth.sidebar(settings)
    actions.show_outcomes()
    return Context(
        settings=settings,
        points=points,
        prometheus=prometheus.for_app(chosen.selected),
        alertmanager=_alertmanager(settings.alertmanager_url, timeout),
        apps=chosen,
    )


# The chosen app outlives a switch of page in the sidebar's navigation (which drops the URL's
# parameters); the URL stays what a pasted link opens.
APP_REMEMBERED = "fleetops_app"
APP_WIDGET = "app_select"


def _app_picked() -> None:
    picked = st.session_state.get(APP_WIDGET)
    chosen = None if picked in (None, apps.ALL_APPS) else str(picked)
    st.session_state[APP_REMEMBERED] = chosen
    if chosen is None:
        st.query_params.pop(links.APP, None)
    else:
        st.query_params[links.APP] = chosen


def app_sidebar(
    settings: ConsoleSettings, points: BreakingPoints, prometheus: Prometheus
) -> apps.AppChoice:
    """The app this page run shows: from the URL, else the one chosen earlier in this session;
    a selector in the sidebar only when there are several apps."""
    reported = apps.reported_apps(prometheus, metrics.exporter_selector(points))
    offered = apps.choice(list(settings.effective_apps), reported, None).options
    asked = st.query_params.get(links.APP)
    if asked:
        problem = apps.problem(str(asked), offered)
        if problem:
            st.warning(problem)
            st.query_params.pop(links.APP, None)
            asked = None
    else:
        asked = st.session_state.get(APP_REMEMBERED)
        if asked is not None and asked in offered:
            st.query_params[links.APP] = asked
    chosen = apps.choice(list(settings.effective_apps), reported, asked)
    st.session_state[APP_REMEMBERED] = chosen.selected
    if chosen.several:
        # Set before the widget exists in this run: the URL (a link, Back) decides.
        st.session_state[APP_WIDGET] = chosen.selected or apps.ALL_APPS
        st.sidebar.selectbox(
            "App", [apps.ALL_APPS, *chosen.options], key=APP_WIDGET, on_change=_app_picked
        )
    links.keep_app(chosen.selected)
    return chosen


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
