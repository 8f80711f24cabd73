"""The Celery app of the fleet: ADR configuration, queues, retries, dead letters, telemetry.

Run a worker with ``celery -A workers.app worker -Q images`` and Beat with
``celery -A workers.app beat``; every setting comes from FLEETOPS_* variables (workers/config.py).
"""

from __future__ import annotations

import redis.exceptions
import sqlalchemy.exc
from celery import Celery, Task
from celery.signals import task_failure, task_rejected, task_unknown

from workers import config, deadletter
from workers.client import queue_conf, transport_options
from workers.errors import PermanentError, TransientError
from workers.queues import DEAD_LETTER
from workers.telemetry import enable_telemetry

settings = config.load()

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientError,
    ConnectionError,
    TimeoutError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    sqlalchemy.exc.OperationalError,
)


class FleetTask(Task):
    """Base task: transient errors retry with exponential backoff and full jitter."""

    autoretry_for = TRANSIENT_ERRORS
    dont_autoretry_for = (PermanentError,)
    max_retries = settings.retry_max
    retry_backoff = settings.retry_backoff_seconds
    retry_backoff_max = settings.retry_backoff_max_seconds
    retry_jitter = True


app = Celery(
    "fleetops",
    broker=settings.broker_url,
    backend=settings.effective_result_backend,
    task_cls=FleetTask,
    include=["workers.images.tasks", "workers.reminders.tasks", "workers.maintenance"],
)

app.conf.update(
    # Reliability (ADR-0012 safeguards): a task is acknowledged only once done, so a worker
    # that dies mid-task hands it to another; one message reserved per process at a time.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=settings.worker_prefetch_multiplier,
    worker_concurrency=settings.worker_concurrency,
    worker_max_tasks_per_child=settings.worker_max_tasks_per_child,
    worker_max_memory_per_child=settings.worker_max_memory_per_child_kb,
    task_time_limit=settings.task_time_limit,
    task_soft_time_limit=settings.task_soft_time_limit,
    result_expires=settings.result_expires,
    # Events feed the exporter, Flower and the task history.
    worker_send_task_events=True,
    task_send_sent_event=True,
    task_track_started=True,
    # JSON only: task payloads must be readable by every consumer of the event stream.
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    **queue_conf(settings.broker_url),
    broker_transport_options=transport_options(settings.broker_visibility_timeout),
    broker_connection_retry_on_startup=True,
    beat_scheduler="workers.beat:ReportingScheduler",
    beat_schedule={
        "due-soon-reminders": {
            "task": "reminders.send_due_soon",
            "schedule": settings.reminder_interval_seconds,
        },
    },
    timezone="UTC",
)

enable_telemetry(app, interval=settings.telemetry_interval)

# Every task message this app publishes (tasks calling tasks, Beat's) carries the AMQP timestamp
# property that RabbitMQ's oldest-message age needs: workers.client.stamp_publish_time, a
# before_task_publish hook connected when workers.client is imported (above), so that client
# apps, which do not import this module, stamp theirs too.


@task_failure.connect
def _dead_letter_failure(sender=None, task_id=None, exception=None, einfo=None, **_) -> None:  # type: ignore[no-untyped-def]
    # Only final failures reach here: a retry raises Retry and sends task-retried instead.
    if sender is None or exception is None:
        return
    letter = deadletter.from_failure(sender.name, task_id, sender.request, exception, einfo)
    deadletter.record(sender.app, letter)


@task_rejected.connect
def _dead_letter_rejected(sender=None, message=None, exc=None, **_) -> None:  # type: ignore[no-untyped-def]
    _dead_letter_message(message, exc, reason="rejected by the worker")


@task_unknown.connect
def _dead_letter_unknown(sender=None, message=None, exc=None, name=None, id=None, **_) -> None:  # type: ignore[no-untyped-def]
    _dead_letter_message(message, exc, reason=f"no worker knows the task {name!r}")


def _dead_letter_message(message, exc, reason: str) -> None:  # type: ignore[no-untyped-def]
    if message is None:
        return
    headers = message.headers or {}
    try:
        args, kwargs, _embed = message.decode()
    except Exception:
        args, kwargs = [], {}
    letter = deadletter.DeadLetter(
        task_id=str(headers.get("id", "")),
        name=str(headers.get("task", "")),
        args=list(args or []),
        kwargs=dict(kwargs or {}),
        queue=(message.delivery_info or {}).get("routing_key", "") or "",
        exception=type(exc).__name__ if exc else "Rejected",
        reason=f"{reason}: {exc}" if exc else reason,
    )
    if letter.queue != DEAD_LETTER:
        deadletter.record(app, letter)
