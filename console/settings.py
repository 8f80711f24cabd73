"""Settings of the console, read from FLEETOPS_* variables (validated at start)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from fleetops import ports
from fleetops.settings import FleetSettings, load_settings, shown_as

REPO = Path(__file__).resolve().parent.parent


class ConsoleSettings(FleetSettings):
    # Where the console reads from; each may be down without taking the others with it.
    prometheus_url: str = ports.local_url(ports.PROMETHEUS)
    """Prometheus HTTP API."""
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
    console_host: str = ports.LOOPBACK
    """Where `fleetops console` listens..."""
    console_port: int = Field(ports.CONSOLE, ge=1, le=65535)
    """...and its port."""
    console_refresh_seconds: float = Field(10.0, gt=0)
    """Seconds between refreshes of the Overview."""
    # The page must still answer when a source hangs.
    console_source_timeout: float = Field(3.0, gt=0)
    """A source slower than this many seconds counts as down."""

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
