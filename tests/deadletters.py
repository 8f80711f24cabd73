"""Dead letters as anyone with access to the broker could publish them (tests only)."""

from __future__ import annotations

from celery import Celery

from workers import deadletter
from workers.queues import DEAD_LETTER


def publish_raw(app: Celery, body: object) -> None:
    """Put ``body`` in the dead-letter queue as it is, without the workers' checks."""
    with app.connection_for_write() as conn:
        conn.Producer(serializer="json").publish(
            body,
            exchange=deadletter.DLQ_EXCHANGE,
            routing_key=DEAD_LETTER,
            declare=[deadletter.DLQ_QUEUE],
        )
