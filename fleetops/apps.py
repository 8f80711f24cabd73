"""The Celery apps one fleetops deployment watches: one by default, several with FLEETOPS_APPS.

Every series, history row, console page and alert carries the app's name in the ``app`` label
(column, query parameter), so several apps on several brokers share one exporter, one recorder,
one Prometheus and one console. One app needs no configuration: it is ``FLEETOPS_APP_NAME``
(``default``) on ``FLEETOPS_BROKER_URL``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

APP_LABEL = "app"
DEFAULT_APP = "default"
# A label value, a column value, a URL query value and a file-name part: short and printable.
APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
MAX_APPS = 64


@dataclass(frozen=True)
class App:
    name: str
    broker_url: str


_NOT_AN_APP_NAME = (
    "not an app name: 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit"
)


def check_app_name(name: str) -> str:
    if not isinstance(name, str) or not APP_NAME.match(name):
        raise ValueError(f"{str(name)[:80]!r} is {_NOT_AN_APP_NAME}")
    return name


def check_entry_name(index: int, name: object) -> str:
    """An app name given as the ``index``-th entry of a setting; the message names the place,
    not the text, which may be a URL with its password."""
    if not isinstance(name, str) or not APP_NAME.match(name):
        raise ValueError(f"entry {index}: {_NOT_AN_APP_NAME}")
    return name


def name_value_pairs(text: str, what: str) -> dict[str, str]:
    """``name=value,name=value`` -> {name: value}, each name an app name given once.

    Messages name an entry by its place, never by its text: an entry without its "=" is a bare
    URL, and its password may hold any character a redaction could miss.
    """
    pairs: dict[str, str] = {}
    entries = filter(None, (part.strip() for part in text.split(",")))
    for index, item in enumerate(entries, start=1):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name or not value.strip():
            raise ValueError(f"entry {index}: expected name={what}")
        check_entry_name(index, name)
        if name in pairs:
            raise ValueError(f"app {name!r} is given twice")
        pairs[name] = value.strip()
    return pairs


def parse_apps(value: object) -> dict[str, str]:
    """``name=url,name=url`` or a JSON object -> {name: broker URL}, in the order given.

    Broker URLs hold no commas (Sentinel lists use ';'), so a comma separates apps.
    """
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"FLEETOPS_APPS is not a JSON object: {exc}") from exc
        else:
            value = name_value_pairs(text, "broker-url")
    if not isinstance(value, Mapping):
        raise ValueError("expected name=broker-url pairs or a JSON object")
    if len(value) > MAX_APPS:
        raise ValueError(f"{len(value)} apps given; at most {MAX_APPS}")
    apps: dict[str, str] = {}
    for index, (name, url) in enumerate(value.items(), start=1):
        check_entry_name(index, name)
        if not isinstance(url, str) or not url:
            raise ValueError(f"app {name!r}: the broker URL must be a non-empty string")
        # Events carry no app: two apps on one broker would each count the other's tasks.
        # The same broker is often written two ways (a default port, a host's case, a password).
        identity = broker_identity(url)
        twin = next((o for o, known in apps.items() if broker_identity(known) == identity), None)
        if twin is not None:
            raise ValueError(f"apps {twin!r} and {name!r} have the same broker URL")
        apps[name] = url
    return apps


# Schemes that reach one broker the same way, and the port each listens on when none is given.
_SCHEME_FAMILY = {"redis": "redis", "rediss": "redis", "amqp": "amqp", "pyamqp": "amqp"}
_DEFAULT_PORT = {"redis": 6379, "rediss": 6379, "amqp": 5672, "pyamqp": 5672, "amqps": 5671}


def broker_identity(url: str) -> tuple[object, ...]:
    """What tells two brokers apart: scheme family, lower-case hosts, ports (defaults filled in),
    database or virtual host. No user information: one broker with two logins is one broker.
    Each ";"-separated URL of a Sentinel list counts; unreadable text stands for itself."""
    parts: list[object] = []
    for one in url.split(";"):
        try:
            split = urlsplit(one.strip())
            scheme = split.scheme.lower().split("+", 1)[0]
            port = split.port or _DEFAULT_PORT.get(scheme)
            host = (split.hostname or "").lower()
        except ValueError:
            return (url,)
        family = _SCHEME_FAMILY.get(scheme, scheme)
        path = split.path.strip("/")
        if family == "redis":
            path = path or "0"  # redis://h is database 0
        elif family == "amqp":
            path = unquote(path) or "/"  # amqp://h is the virtual host "/"
        parts.append((family, host, port, path))
    return tuple(sorted(parts, key=repr))


def apps_of(apps: Mapping[str, str], app_name: str, broker_url: str) -> list[App]:
    """The apps to follow: FLEETOPS_APPS when given, else the one app on the fleet's broker."""
    if apps:
        return [App(name, url) for name, url in apps.items()]
    return [App(app_name, broker_url)]
