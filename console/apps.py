"""Which Celery app the console shows and acts on (fleetops/apps.py names them).

The choice lives in the URL's ``app`` parameter, so a pasted link opens the same app, and every
link between pages keeps it (console/links.py). The apps offered are those configured
(FLEETOPS_APPS, else FLEETOPS_APP_NAME) and those whose series Prometheus holds; with one app
there is nothing to choose and nothing changes. No selection means all apps.

Queries get the app as a label matcher (``with_app``) that also matches series without an
``app`` label, so a fleet whose exporter or recording rules predate the label still shows its
numbers. Control actions go to the chosen app's broker, and with several apps only when exactly
one is chosen (``AppChoice.refusal``)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from console.sources import SourceDown
from console.sources.prometheus import Prometheus
from fleetops.apps import APP_LABEL, DEFAULT_APP, MAX_APPS, App, check_app_name

# How long the apps Prometheus reports are reused: one cheap query per page run is still a
# query, and the list changes only when an app is added.
REPORTED_TTL_SECONDS = 15.0
ALL_APPS = "All apps"


def app_matcher(app: str | None) -> str:
    """The label matcher that picks ``app``'s series (and series without the label), or "".

    A regular expression that also matches the empty value: Prometheus-compatible stores read
    a missing label as empty, so a one-app fleet from before the label keeps its history."""
    if app is None:
        return ""
    check_app_name(app)  # letters, digits, '_', '.', '-': only '.' means anything to a regex
    pattern = app.replace(".", r"\.")
    # Inside a PromQL string a backslash is written twice.
    return f'{APP_LABEL}=~"{pattern.replace(chr(92), chr(92) * 2)}|"'


def with_app(selector: str, app: str | None) -> str:
    """A selector's matchers (``job="x", queue_name!="y"``) plus the app's, when one is chosen."""
    return ", ".join(part for part in (selector, app_matcher(app)) if part)


def shows(labels: dict[str, str], app: str | None) -> bool:
    """Whether an alert (its labels) belongs on a page of ``app``: the app's own, and those
    without the label (from rules before the label), as the query matcher reads series."""
    return app is None or labels.get(APP_LABEL, "") in ("", app)


def reported_expr(exporter_selector: str) -> str:
    # Queues and workers are what every app's exporter serves; only the /api/v1/query endpoint
    # is used, which every PromQL store answers the same way.
    names = '__name__=~"celery_queue_length|celery_worker_up"'
    matchers = ", ".join(part for part in (names, exporter_selector) if part)
    return f"count by ({APP_LABEL}) ({{{matchers}}})"


_reported: dict[tuple[str, str], tuple[float, tuple[str, ...]]] = {}


def reported_apps(prom: Prometheus, exporter_selector: str) -> tuple[str, ...]:
    """The app names Prometheus holds series of (none when it is down: the page says so)."""
    key = (prom.url, exporter_selector)
    cached = _reported.get(key)
    now = time.monotonic()
    if cached is not None and now - cached[0] < REPORTED_TTL_SECONDS:
        return cached[1]
    try:
        samples = prom.query(reported_expr(exporter_selector))
    except SourceDown:
        # Remembered too: a hanging store must not cost every page run another timeout here
        # on top of the page's own banner.
        _reported[key] = (now, ())
        return ()
    names: list[str] = []
    for sample in samples:
        name = sample.labels.get(APP_LABEL, "")
        if not name or math.isnan(sample.value):
            continue
        try:
            names.append(check_app_name(name))
        except ValueError:
            continue  # not a name we could put in a link or a matcher: not offered
    found = tuple(sorted(set(names))[:MAX_APPS])
    _reported[key] = (now, found)
    return found


@dataclass(frozen=True)
class AppChoice:
    configured: tuple[App, ...]
    options: tuple[str, ...]
    selected: str | None  # None: all apps

    @property
    def several(self) -> bool:
        return len(self.options) > 1

    @property
    def acting(self) -> App | None:
        """The app whose broker an action goes to: the chosen one, or the only one."""
        name = self.selected
        if name is None:
            if self.several or len(self.configured) != 1:
                return None
            return self.configured[0]
        return next((app for app in self.configured if app.name == name), None)

    def refusal(self) -> str | None:
        """Why no action can go to a broker now, or None."""
        if self.acting is not None:
            return None
        if self.selected is None:
            return (
                f"{len(self.options)} apps: choose one app (sidebar) to act on its broker;"
                " nothing is sent to all apps at once."
            )
        return (
            f"The console knows no broker of app {self.selected!r} (not in FLEETOPS_APPS):"
            " it only reads that app."
        )


def choice(configured: list[App], reported: tuple[str, ...], asked: str | None) -> AppChoice:
    """The apps offered (configured first, then the ones only Prometheus knows) and the one
    chosen; ``asked`` must be one of them (checked by the caller with ``problem``)."""
    names = [app.name for app in configured]
    options = tuple(names + [name for name in reported if name not in names])
    return AppChoice(tuple(configured), options, asked if asked in options else None)


def problem(asked: str, options: tuple[str, ...]) -> str | None:
    """Why the URL's app cannot be used, in words for the page; None when it can."""
    try:
        check_app_name(asked)
    except ValueError:
        return "The 'app' in the link is not an app name; showing all apps."
    if asked not in options:
        shown = ", ".join(options) or "none"
        return f"The app {asked!r} in the link is not known (known: {shown}); showing all apps."
    return None


def task_owner(recorded: str | None, configured: Sequence[App]) -> str | None:
    """The app a task's history row belongs to, from its ``app`` column (None: unknown).

    Rows recorded before the history had the column read DEFAULT_APP (its server default):
    with one configured app they are that app's, whatever it is named now, or naming the app
    (FLEETOPS_APP_NAME=prod) would refuse Retry and Revoke on every older task. With several
    apps 'default' stays what it says: no app of the list can claim the row."""
    if not recorded:
        return None
    if recorded == DEFAULT_APP and len(configured) == 1:
        return configured[0].name
    return recorded
