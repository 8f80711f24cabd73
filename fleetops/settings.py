"""Settings shared by every process of the fleet, read from FLEETOPS_* environment variables.

Each component subclasses :class:`FleetSettings` with its own fields (named after the
component, e.g. ``exporter_port`` read from ``FLEETOPS_EXPORTER_PORT``) and loads them with
:func:`load_settings`, which turns validation errors into a :class:`ConfigError` that names
the environment variable at fault.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fleetops.errors import ConfigError

ENV_PREFIX = "FLEETOPS_"


class FleetSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # Where the broker lives. Workers, exporter and console may run on different hosts: every
    # address is configured, never assumed local.
    broker_url: str = "redis://127.0.0.1:6379/0"
    result_backend: str | None = None
    # Runtime state of a local fleet (SQLite file, object store) when nothing else is configured.
    data_dir: Path = Path("var")
    database_url: str | None = None

    @field_validator("broker_url")
    @classmethod
    def _known_broker(cls, value: str) -> str:
        scheme = value.split("://", 1)[0]
        known = {"redis", "rediss", "sentinel", "amqp", "amqps", "pyamqp", "memory"}
        if scheme not in known:
            raise ValueError(f"unsupported broker scheme {scheme!r}; use one of {sorted(known)}")
        return value

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'fleetops.db').resolve()}"

    @property
    def effective_result_backend(self) -> str:
        if self.result_backend:
            return self.result_backend
        if self.broker_url.startswith(("redis://", "rediss://", "sentinel://")):
            return self.broker_url
        return "db+" + self.effective_database_url


S = TypeVar("S", bound=BaseSettings)


def field_default(model: type[BaseModel], name: str) -> Any:
    """The default of ``model``'s field ``name``, its factory called: the one place it is."""
    return model.model_fields[name].get_default(call_default_factory=True)


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


def option_help(model: type[BaseSettings], name: str, text: str, *, unset: str = "") -> str:
    """``text`` followed by where an option's value comes from when it is not given: the
    setting's variable, else the model's default. Generated, so a CLI help cannot drift from
    the setting; ``unset`` says what a default of None means (e.g. a path under data_dir)."""
    default = field_default(model, name)
    fallback = unset if default is None else format_default(default)
    otherwise = f" or {fallback}" if fallback else ""
    return f"{text} (default: ${env_name(model, name)}{otherwise})."


def load_settings(cls: type[S], **overrides: object) -> S:
    """Build settings from the environment, or raise ConfigError naming the bad variable."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        prefix = cls.model_config.get("env_prefix", "")
        raise ConfigError.from_validation(exc, source="environment", env_prefix=prefix) from exc
