"""The Beat-scheduled reminder task (ADR-0004: ``reminders.send_due_soon``)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import sessionmaker

from workers.app import app, settings
from workers.db import engine_for
from workers.reminders import service


@app.task(name="reminders.send_due_soon", bind=True)
def send_due_soon(self) -> int:  # type: ignore[no-untyped-def]
    factory = sessionmaker(engine_for(settings.effective_database_url), expire_on_commit=False)
    with factory() as session:
        return service.send_due_soon(
            session,
            within=timedelta(hours=settings.reminder_due_within_hours),
            sender=self.request.hostname or "",
        )
