"""Settings of the task-history recorder, read from FLEETOPS_HISTORY_* variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from exporters.stream.health import STALL_AFTER
from fleetops.settings import FleetSettings, load_settings

KNOWN_DATABASE_SCHEMES = ("sqlite", "postgresql")


class HistorySettings(FleetSettings):
    # A file of its own by default: the history writes far more than the rest of the fleet
    # and must not lock the application's SQLite database (FLEETOPS_DATABASE_URL).
    history_database_url: str | None = None

    # Writes: one transaction per batch; a batch closes at this size or after this delay.
    # Larger batches finish more tasks inside one batch, so fewer rows are updated twice:
    # 10,000 against 2,000 measured 1.8x the SQLite and 1.3x the PostgreSQL ingest per CPU
    # second (bench/history.py), and the flush interval still bounds the delay.
    history_batch_size: int = Field(10_000, ge=1, le=100_000)
    history_flush_interval: float = Field(0.5, gt=0)

    # Privacy and size: argument, keyword-argument and result reprs are cut at this length,
    # or not stored at all when history_record_args is false.
    history_record_args: bool = True
    history_args_max_chars: int = Field(1024, ge=16)
    history_traceback_max_chars: int = Field(16_384, ge=256)

    # Retention: by age (from the task's last event) and by row count, failures kept longer.
    history_retention_days: float = Field(7.0, gt=0)
    history_failed_retention_days: float = Field(30.0, gt=0)
    history_max_rows: int = Field(1_000_000, ge=1)
    history_max_failed_rows: int = Field(1_000_000, ge=1)
    history_prune_interval: float = Field(300.0, gt=0)

    # While the database is down: this many events wait in memory, then they go to disk
    # (history_spool_dir, default <data_dir>/history-spool) up to history_spool_max_bytes.
    history_buffer_events: int = Field(100_000, ge=1)
    history_spool_dir: Path | None = None
    history_spool_max_bytes: int = Field(512 * 1024 * 1024, ge=1024)
    history_retry_initial_seconds: float = Field(0.5, gt=0)
    history_retry_max_seconds: float = Field(15.0, gt=0)

    # Event source. On RabbitMQ the recorder consumes from this durable, named queue so events
    # wait for it while it restarts; the broker keeps at most history_queue_max_length of them.
    history_queue_name: str = "fleetops.history"
    history_queue_max_length: int = Field(1_000_000, ge=1)

    # A part (reader, consumer, writer) silent this long is stalled: /healthz answers 503.
    history_stall_after: float = Field(STALL_AFTER, gt=0)

    # The recorder's own /metrics and /healthz (0 turns them off).
    history_metrics_port: int = Field(9818, ge=0, le=65535)
    history_metrics_host: str = "127.0.0.1"

    @field_validator("history_database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.split("://", 1)[0].split("+", 1)[0]
        if scheme not in KNOWN_DATABASE_SCHEMES:
            raise ValueError(
                f"unsupported database {scheme!r}; use sqlite:///path or postgresql://..."
            )
        return value

    @property
    def effective_history_database_url(self) -> str:
        if self.history_database_url:
            return self.history_database_url
        return f"sqlite:///{(self.data_dir / 'history.db').resolve()}"

    @property
    def effective_spool_dir(self) -> Path:
        return (self.history_spool_dir or self.data_dir / "history-spool").resolve()

    @property
    def effective_quarantine_dir(self) -> Path:
        """Events the database refused one by one (exporters/history/quarantine.py)."""
        return (self.data_dir / "history-quarantine").resolve()


def load() -> HistorySettings:
    return load_settings(HistorySettings)
