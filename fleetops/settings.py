"""Settings shared by every process of the fleet, read from FLEETOPS_* environment variables.

Each component subclasses :class:`FleetSettings` with its own fields (named after the
component, e.g. ``exporter_port`` read from ``FLEETOPS_EXPORTER_PORT``) and loads them with
:func:`load_settings`, which turns validation errors into a :class:`ConfigError` that names
the environment variable at fault.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError, field_validator
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


def load_settings(cls: type[S], **overrides: object) -> S:
    """Build settings from the environment, or raise ConfigError naming the bad variable."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        prefix = cls.model_config.get("env_prefix", "")
        raise ConfigError.from_validation(exc, source="environment", env_prefix=prefix) from exc
