"""Settings of the console, read from FLEETOPS_* variables (validated at start)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from fleetops.settings import FleetSettings, load_settings

REPO = Path(__file__).resolve().parent.parent


class ConsoleSettings(FleetSettings):
    # Where the console reads from; each may be down without taking the others with it.
    prometheus_url: str = "http://127.0.0.1:9090"
    alertmanager_url: str = "http://127.0.0.1:9093"
    history_database_url: str | None = None
    runbooks_dir: Path = REPO / "runbooks"

    # Unset: nobody can act with a password (OIDC from Streamlit secrets may still log in).
    console_password: SecretStr | None = Field(None, repr=False)
    console_host: str = "127.0.0.1"
    console_port: int = Field(8501, ge=1, le=65535)
    # Seconds between refreshes of the Overview.
    console_refresh_seconds: float = Field(10.0, gt=0)
    # A source slower than this counts as down: the page must still answer.
    console_source_timeout: float = Field(3.0, gt=0)

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
