"""Worker settings: the ADR's safeguards, every one overridable by a FLEETOPS_* variable."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from fleetops.settings import FleetSettings, load_settings, shown_as


class WorkerSettings(FleetSettings):
    # ADR-0012 "Safeguards".
    worker_concurrency: int = Field(4, ge=1)
    """Pool processes per worker (ADR-0012)."""
    worker_max_memory_per_child_kb: int = Field(200_000, ge=10_000)
    """A pool child past this RSS is replaced (ADR-0012)."""
    worker_max_tasks_per_child: int = Field(100, ge=1)
    """A pool child is replaced after this many tasks (ADR-0012)."""
    task_time_limit: int = Field(300, ge=1)
    """Seconds after which a task is killed (ADR-0012)..."""
    task_soft_time_limit: int = Field(240, ge=1)
    """...and after which it is asked to stop; must be below the hard limit."""
    worker_prefetch_multiplier: int = Field(1, ge=1)
    """Messages reserved per pool process (ADR-0012)."""
    result_expires: int = Field(3600, ge=60)
    """Seconds results are kept (ADR-0012)."""
    # A task reserved by a worker that dies must not come back before its retry countdown
    # has passed, or a countdown task would run twice.
    broker_visibility_timeout: int = Field(3600, ge=1)
    """Redis hands an unacknowledged task to another worker after this many seconds; must exceed the
    retry backoff maximum."""

    # ADR-001: exponential backoff 60 s, 120 s, 240 s, with jitter, for transient errors.
    retry_max: int = Field(3, ge=0)
    """Retries of a transient error (ADR-001)."""
    retry_backoff_seconds: int = Field(60, ge=1)
    """First retry delay, doubled each time, with full jitter..."""
    retry_backoff_max_seconds: int = Field(600, ge=1)
    """...up to this many seconds."""

    telemetry_interval: float = Field(5.0, gt=0)
    """Seconds between a worker's memory (worker-telemetry) events."""

    reminder_interval_seconds: float = Field(300.0, gt=0)
    """Beat schedule of `reminders.send_due_soon`."""
    reminder_due_within_hours: float = Field(24.0, gt=0)
    """What "due soon" means, in hours."""

    image_max_bytes: int = Field(25 * 1024 * 1024, ge=1024)
    """Larger uploads are rejected as oversized."""
    # A decompression bomb is a small file that decodes to a huge bitmap; refuse it before.
    image_max_pixels: int = Field(50_000_000, ge=10_000)
    """Larger bitmaps are rejected as decompression bombs."""
    image_duplicate_distance: int = Field(6, ge=0, le=64)
    """Hamming distance of 64-bit perceptual hashes that counts as a near-duplicate."""
    object_store_dir: Path | None = Field(None, json_schema_extra=shown_as("<data_dir>/objects"))
    """Where images and thumbnails are stored: shared storage on a multi-host fleet."""

    @model_validator(mode="after")
    def _limits_consistent(self) -> WorkerSettings:
        if self.task_soft_time_limit >= self.task_time_limit:
            raise ValueError(
                f"FLEETOPS_TASK_SOFT_TIME_LIMIT ({self.task_soft_time_limit}) must be below"
                f" FLEETOPS_TASK_TIME_LIMIT ({self.task_time_limit})"
            )
        if self.retry_backoff_max_seconds >= self.broker_visibility_timeout:
            raise ValueError(
                f"FLEETOPS_RETRY_BACKOFF_MAX_SECONDS ({self.retry_backoff_max_seconds}) must be"
                f" below FLEETOPS_BROKER_VISIBILITY_TIMEOUT ({self.broker_visibility_timeout})"
            )
        return self

    @property
    def effective_object_store_dir(self) -> Path:
        return (self.object_store_dir or self.data_dir / "objects").resolve()


def load() -> WorkerSettings:
    return load_settings(WorkerSettings)
