"""Settings of the task-history recorder, read from FLEETOPS_HISTORY_* variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from exporters.stream.health import STALL_AFTER
from fleetops import ports
from fleetops.settings import FleetSettings, load_settings, require_scheme, shown_as, sqlite_url

KNOWN_DATABASE_SCHEMES = ("sqlite", "postgresql")
# How far back "recent" reads look when no time is given: `fleetops history failures` and the
# console's Tasks and Failures pages.
RECENT_WINDOW = "24h"


class HistorySettings(FleetSettings):
    # A file of its own by default: the history writes far more than the rest of the fleet
    # and must not lock the application's SQLite database (FLEETOPS_DATABASE_URL).
    history_database_url: str | None = Field(
        None, json_schema_extra=shown_as("sqlite:///<data_dir>/history.db")
    )
    """`sqlite:///path` or `postgresql://user:pw@host/db` (psycopg 3). The history gets its own
    SQLite file so that its writes never lock the application's database."""

    # Larger batches finish more tasks inside one batch, so fewer rows are updated twice:
    # 10,000 against 2,000 measured 1.8x the SQLite and 1.3x the PostgreSQL ingest per CPU
    # second (bench/history.py), and the flush interval still bounds the delay.
    history_batch_size: int = Field(10_000, ge=1, le=100_000)
    """A batch is written, in one transaction, once it holds this many events..."""
    history_flush_interval: float = Field(0.5, gt=0)
    """...or this many seconds after its first event."""

    history_record_args: bool = True
    """The privacy switch: false, and args, kwargs and result are never stored."""
    history_args_max_chars: int = Field(1024, ge=16)
    """Longer args, kwargs and result reprs are cut and end in `…`."""
    history_traceback_max_chars: int = Field(16_384, ge=256)
    """The same cut for the exception message and the traceback."""

    # Retention: by age (from the task's last event) and by row count, failures kept longer.
    history_retention_days: float = Field(7.0, gt=0)
    """Tasks whose latest event is older are pruned."""
    history_failed_retention_days: float = Field(30.0, gt=0)
    """The same for failed tasks, kept longer."""
    history_max_rows: int = Field(1_000_000, ge=1)
    """At most this many tasks are kept, the newest."""
    history_max_failed_rows: int = Field(1_000_000, ge=1)
    """At most this many failed tasks are kept, the newest."""
    history_prune_interval: float = Field(300.0, gt=0)
    """Seconds between two applications of retention."""

    history_handover_bytes: int = Field(64 * 1024 * 1024, ge=1024 * 1024)
    """Bound of raw event batches handed from the reader to the checking thread; past it events
    are dropped unread and counted as overflow."""

    # While the database is down events wait in memory, then on disk, then are dropped.
    history_buffer_events: int = Field(100_000, ge=1)
    """How many events wait in memory while the database is slow or down."""
    history_spool_dir: Path | None = Field(
        None, json_schema_extra=shown_as("<data_dir>/history-spool")
    )
    """Where events wait next, on disk."""
    history_spool_max_bytes: int = Field(512 * 1024 * 1024, ge=1024)
    """The bound of the disk spool; past it events are dropped and counted."""
    history_retry_initial_seconds: float = Field(0.5, gt=0)
    """First wait before writing again after a failed write..."""
    history_retry_max_seconds: float = Field(15.0, gt=0)
    """...doubling up to this while the database stays down."""

    # On RabbitMQ events wait in a durable queue while the recorder restarts.
    history_queue_name: str = "fleetops.history"
    """The durable queue the recorder consumes on RabbitMQ."""
    history_queue_max_length: int = Field(1_000_000, ge=1)
    """The most events RabbitMQ keeps in it for an absent recorder."""
    # 30,000 events/s held for about a second (one batch filling while the one before commits)
    # is 30,000 messages; the margin keeps a slow commit from throttling the stream.
    history_prefetch: int = Field(50_000, ge=1, le=65_535)
    """On RabbitMQ, the most messages the recorder holds unacknowledged: it acknowledges them
    once their events are committed, and a recorder killed meanwhile gets them again."""

    history_stall_after: float = Field(STALL_AFTER, gt=0)
    """A part (reader, consumer, writer) silent this many seconds is stalled: /healthz answers
    503."""

    history_metrics_port: int = Field(ports.RECORDER, ge=0, le=65535)
    """Port of the recorder's /metrics and /healthz; 0 turns them off."""
    history_metrics_host: str = ports.LOOPBACK
    """Address of the recorder's /metrics and /healthz."""

    @field_validator("history_database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return require_scheme(
            value, KNOWN_DATABASE_SCHEMES, "use sqlite:///path or postgresql://..."
        )

    @property
    def effective_history_database_url(self) -> str:
        return self.history_database_url or sqlite_url(self.data_dir, "history.db")

    @property
    def effective_spool_dir(self) -> Path:
        return (self.history_spool_dir or self.data_dir / "history-spool").resolve()

    @property
    def effective_quarantine_dir(self) -> Path:
        """Events the database refused one by one (exporters/history/quarantine.py)."""
        return (self.data_dir / "history-quarantine").resolve()


def load() -> HistorySettings:
    return load_settings(HistorySettings)
