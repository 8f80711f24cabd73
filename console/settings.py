"""Settings of the console, read from FLEETOPS_* variables (validated at start)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from fleetops import ports
from fleetops.settings import FleetSettings, load_settings, shown_as

REPO = Path(__file__).resolve().parent.parent


class ConsoleSettings(FleetSettings):
    # Where the console reads from; each may be down without taking the others with it.
    prometheus_url: str = ports.local_url(ports.PROMETHEUS)
    """Any PromQL HTTP API (Prometheus, VictoriaMetrics, Thanos, Mimir): the URL before /api/v1."""
    alertmanager_url: str = ports.local_url(ports.ALERTMANAGER)
    """Alertmanager HTTP API."""
    history_database_url: str | None = Field(
        None, json_schema_extra=shown_as("the recorder's default")
    )
    """The task-history store (SQLite or PostgreSQL) the recorder writes."""
    runbooks_dir: Path = Field(
        REPO / "runbooks", json_schema_extra=shown_as("runbooks/ of the repository")
    )
    """Where the runbook pages are."""

    # Unset: nobody can act with a password (OIDC from Streamlit secrets may still log in).
    console_password: SecretStr | None = Field(
        None, repr=False, json_schema_extra=shown_as("unset: password login off")
    )
    """The local operator password, needed for every action."""
    console_local_operator: str | None = Field(
        None, json_schema_extra=shown_as("the OS user that started the console")
    )
    """Who acts after a password login; the audit log writes local:NAME."""
    # A shared password cannot tell people apart; slowing it down is what keeps guessing slow.
    console_login_free_attempts: int = Field(3, ge=1, le=100)
    """Failed password logins in a row before each further one locks the login..."""
    console_login_max_delay: float = Field(300.0, gt=0, le=86400)
    """...for 1, 2, 4, ... seconds, at most this many."""
    # OIDC (st.login): who signed in is the provider's word; what they may do is ours.
    console_operators: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Emails (or subjects) of OIDC users who may act, comma separated; others only read."""
    console_role_claim: str | None = Field(None, json_schema_extra=shown_as("unset: not used"))
    """An OIDC claim (e.g. groups or roles) that makes an operator when it holds..."""
    console_operator_role: str = "fleetops-operator"
    """...this value (the claim may be a string or a list)."""
    console_host: str = ports.LOOPBACK
    """Where `fleetops console` listens..."""
    console_port: int = Field(ports.CONSOLE, ge=1, le=65535)
    """...and its port."""
    console_refresh_seconds: float = Field(10.0, gt=0)
    """Seconds between refreshes of the Overview."""
    # The page must still answer when a source hangs.
    console_source_timeout: float = Field(3.0, gt=0)
    """A source slower than this many seconds counts as down."""

    @field_validator("console_operators", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def audit_log(self) -> Path:
        return self.data_dir / "console-audit.jsonl"

    @property
    def effective_history_database_url(self) -> str:
        # The recorder's own default, so both agree on the file without repeating it here.
        from exporters.history.settings import HistorySettings

        return HistorySettings(
            data_dir=self.data_dir, history_database_url=self.history_database_url
        ).effective_history_database_url


def load() -> ConsoleSettings:
    return load_settings(ConsoleSettings)
