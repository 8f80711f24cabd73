"""Items with due dates and the reminders sent for them (one per item and reminder type)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from workers.db import Base


class ReminderType:
    DUE_SOON = "due_soon"


class Item(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(String(255))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Reminder(Base):
    __tablename__ = "reminders"
    # The constraint is what makes sending idempotent: two workers may race, one insert wins.
    __table_args__ = (UniqueConstraint("item_id", "reminder_type", name="uq_reminder_item_type"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    reminder_type: Mapped[str] = mapped_column(String(32))
    sent_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=lambda: datetime.now(UTC)
    )
    sent_by: Mapped[str] = mapped_column(String(255), default="")
