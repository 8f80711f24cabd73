"""Send "due soon" reminders exactly once per item, whatever number of workers run at once."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from workers.reminders.models import Item, Reminder, ReminderType

log = logging.getLogger(__name__)


def _insert_once(session: Session, item_id: int, sender: str):  # type: ignore[no-untyped-def]
    values = {"item_id": item_id, "reminder_type": ReminderType.DUE_SOON, "sent_by": sender}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        statement = pg_insert(Reminder).values(**values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        statement = sqlite_insert(Reminder).values(**values).on_conflict_do_nothing()
    else:
        statement = insert(Reminder).values(**values)
    # RETURNING tells whether this insert landed; rowcount is not reliable across drivers.
    return statement.returning(Reminder.id)


def send_due_soon(
    session: Session, within: timedelta, sender: str, now: datetime | None = None
) -> int:
    """Remind of every item due within ``within`` that has no reminder yet; returns how many."""
    now = now or datetime.now(UTC)
    due = session.execute(
        select(Item.id, Item.title, Item.due_at)
        .outerjoin(
            Reminder,
            and_(Reminder.item_id == Item.id, Reminder.reminder_type == ReminderType.DUE_SOON),
        )
        .where(Reminder.id.is_(None), Item.due_at <= now + within, Item.due_at >= now)
        .order_by(Item.due_at)
    ).all()
    sent = 0
    for item_id, title, due_at in due:
        # The insert is the claim: only the run whose insert lands sends the reminder.
        if session.execute(_insert_once(session, item_id, sender)).scalar() is not None:
            session.commit()
            log.info("reminder: %r (item %s) is due at %s", title, item_id, due_at.isoformat())
            sent += 1
        else:
            session.rollback()
    return sent


def add_item(session: Session, title: str, due_at: datetime) -> int:
    item = Item(title=title, due_at=due_at)
    session.add(item)
    session.flush()
    return item.id
