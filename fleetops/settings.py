"""Settings shared by every process of the fleet, read from FLEETOPS_* environment variables.

Each component subclasses :class:`FleetSettings` with its own fields (named after the
component, e.g. ``exporter_port`` read from ``FLEETOPS_EXPORTER_PORT``) and loads them with
:func:`load_settings`, which turns validation errors into a :class:`ConfigError` that names
the environment variable at fault.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from fleetops import apps as fleet_apps
from fleetops.errors import ConfigError

ENV_PREFIX = "FLEETOPS_"


KNOWN_BROKER_SCHEMES = ("amqp", "amqps", "memory", "pyamqp", "redis", "rediss", "sentinel")


def url_scheme(url: str) -> str:
    """``postgresql+psycopg://host/db`` -> ``postgresql``: the scheme without its driver."""
    return url.split("://", 1)[0].split("+", 1)[0]


def require_scheme(url: str, known: tuple[str, ...], hint: str) -> str:
    """``url`` when its scheme is one of ``known``; a validation error saying what to use."""
    scheme = url_scheme(url)
    if scheme not in known:
        raise ValueError(f"unsupported scheme {scheme!r}; {hint}")
    return url


def sqlite_url(directory: Path, filename: str) -> str:
    """The SQLite URL of a file in ``directory``, absolute so every process agrees on it."""
    return f"sqlite:///{(directory / filename).resolve()}"


def shown_as(text: str) -> dict[str, str]:
    """``Field(..., json_schema_extra=shown_as("..."))``: what the CLI help and the docs show
    in place of the default, when the value itself would not tell (None: what leaving it unset
    means, e.g. a path under data_dir; a path that depends on where the code is installed)."""
    return {"shown_as": text}


def shown_default(model: type[BaseModel], name: str) -> str:
    """The default as the help and the docs show it."""
    extra = model.model_fields[name].json_schema_extra
    if isinstance(extra, dict) and "shown_as" in extra:
        return str(extra["shown_as"])
    default = field_default(model, name)
    return "" if default is None else format_default(default)


class FleetSettings(BaseSettings):
    # A field's docstring is its description: the CLI help and the docs tables show it.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, use_attribute_docstrings=True
    )

    # Where the broker lives. Workers, exporter and console may run on different hosts: every
    # address is configured, never assumed local.
    broker_url: str = "redis://127.0.0.1:6379/0"
    """The Celery broker (Redis or RabbitMQ) every process of the fleet uses."""
    result_backend: str | None = Field(
        None, json_schema_extra=shown_as("the broker on Redis, else the database")
    )
    """Where task results go."""
    # Runtime state of a local fleet (SQLite file, object store) when nothing else is configured.
    data_dir: Path = Path("var")
    """Runtime state: SQLite files, spool, quarantine, audit log, object store."""
    database_url: str | None = Field(
        None, json_schema_extra=shown_as("sqlite:///<data_dir>/fleetops.db")
    )
    """The application's database (reminders, image records)."""
    # Every series, history row and console page carries it as the `app` label (fleetops/apps.py).
    app_name: str = fleet_apps.DEFAULT_APP
    """Name of the one Celery app on broker_url, as the `app` label shows it."""
    apps: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    """Several Celery apps: name=broker-url pairs separated by commas (or a JSON object);
    exporter, recorder and console follow them all. Unset: the one app app_name on broker_url."""

    @field_validator("broker_url")
    @classmethod
    def _known_broker(cls, value: str) -> str:
        return require_scheme(value, KNOWN_BROKER_SCHEMES, f"use one of {KNOWN_BROKER_SCHEMES}")

    @field_validator("app_name")
    @classmethod
    def _app_name(cls, value: str) -> str:
        return fleet_apps.check_app_name(value)

    @field_validator("apps", mode="before")
    @classmethod
    def _apps(cls, value: object) -> dict[str, str]:
        apps = fleet_apps.parse_apps(value)
        for name, url in apps.items():
            # Not require_scheme's message: without a "://" the whole URL would be the scheme.
            if url_scheme(url) not in KNOWN_BROKER_SCHEMES:
                raise ValueError(
                    f"app {name!r}: unsupported scheme in its broker URL;"
                    f" use one of {KNOWN_BROKER_SCHEMES}"
                )
        return apps

    @property
    def effective_apps(self) -> list[fleet_apps.App]:
        """The apps to follow: ``apps`` when given, else ``app_name`` on ``broker_url``."""
        return fleet_apps.apps_of(self.apps, self.app_name, self.broker_url)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or sqlite_url(self.data_dir, "fleetops.db")

    @property
    def effective_result_backend(self) -> str:
        if self.result_backend:
            return self.result_backend
        if self.broker_url.startswith(("redis://", "rediss://", "sentinel://")):
            return self.broker_url
        return "db+" + self.effective_database_url


S = TypeVar("S", bound=BaseSettings)
D = TypeVar("D")


def field_default(model: type[BaseModel], name: str) -> Any:
    """The default of ``model``'s field ``name``, its factory called: the one place it is."""
    return model.model_fields[name].get_default(call_default_factory=True)


def from_settings(view: type[D], settings: BaseModel, prefix: str) -> D:
    """A dataclass whose every field mirrors the setting ``prefix + field``: the component's
    own view of its settings, so the mapping cannot drift from the field list."""
    return view(**{f.name: getattr(settings, prefix + f.name) for f in fields(view)})


def env_name(model: type[BaseSettings], name: str) -> str:
    """The environment variable of a settings field, e.g. FLEETOPS_EXPORTER_PORT."""
    return f"{model.model_config.get('env_prefix', '')}{name}".upper()


def format_default(value: object) -> str:
    """A default as an operator would type it: 30 rather than 30.0, lists comma separated
    (with a space, so a help text can wrap a long one)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, list | tuple):
        return ", ".join(map(format_default, value)) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "none"
    return str(value)


def description(model: type[BaseModel], name: str) -> str:
    """A field's description (its docstring) on one line, without the closing full stop."""
    text = " ".join((model.model_fields[name].description or "").split())
    return text.removesuffix(".")


def option_help(model: type[BaseSettings], name: str, text: str | None = None) -> str:
    """``text`` (by default the setting's description) followed by where an option's value
    comes from when it is not given: the setting's variable, else the model's default (or what
    leaving it unset means). Generated, so a CLI help cannot drift from the setting."""
    text = text or description(model, name)
    fallback = shown_default(model, name)
    otherwise = f" or {fallback}" if fallback else ""
    return f"{text} (default: ${env_name(model, name)}{otherwise})."


def settings_from(cls: type[S], env: Mapping[str, str], **overrides: object) -> S:
    """Settings from ``env`` (e.g. the variables `fleetops up` gives its processes, which need
    not be in os.environ) on top of the environment, or ConfigError naming the bad variable."""
    given = {
        name: env[env_name(cls, name)] for name in cls.model_fields if env_name(cls, name) in env
    }
    return load_settings(cls, **{**given, **overrides})


def load_settings(cls: type[S], **overrides: object) -> S:
    """Build settings from the environment, or raise ConfigError naming the bad variable."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        prefix = cls.model_config.get("env_prefix", "")
        raise ConfigError.from_validation(exc, source="environment", env_prefix=prefix) from exc
