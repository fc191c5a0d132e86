"""The event inbox: every verified push from WeChat, stored before it is acknowledged."""

import hashlib
from datetime import datetime

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.current_platform import current_appid
from app.models.base import Base, Encrypted, utcnow


def inbox_dedupe_key(event_key: str) -> str:
    """What the inbox stores for an event's dedupe key: its hash, never the key in clear."""
    return hashlib.sha256(event_key.encode("utf-8")).hexdigest()


class InboxEvent(Base):
    """One push to the authorization-event URL; the dedupe key makes retries collapse."""

    __tablename__ = "inbox_events"
    __table_args__ = (
        Index("ix_inbox_events_outcome_next_attempt_at", "outcome", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    info_type: Mapped[str] = mapped_column(String(64), index=True)
    component_appid: Mapped[str] = mapped_column(String(64), default=current_appid)
    authorizer_appid: Mapped[str | None] = mapped_column(String(64), index=True)
    create_time: Mapped[int] = mapped_column(BigInteger)
    # SHA-256 of the event's dedupe key (which may name the account), hashed at insert so it
    # needs no rewrite when the account is purged and stays comparable with later copies.
    dedupe_key: Mapped[str] = mapped_column(String(160), unique=True)
    # Clear fields for the staff console (tickets and codes redacted); the full inner XML
    # (with them) is only kept encrypted, for handlers and retries.
    fields: Mapped[dict] = mapped_column(JSON, default=dict)
    raw_xml: Mapped[str] = mapped_column(Encrypted)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    processed_at: Mapped[datetime | None]
    # pending -> processing -> processed | ignored | failed (failed is retried by a job)
    outcome: Mapped[str] = mapped_column(String(16), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    # Whoever processes the event holds it until then (a crashed worker's claim expires).
    claimed_until: Mapped[datetime | None]


class DailyCounter(Base):
    """Counts we keep instead of data: rejected requests by reason, foreign messages, ..."""

    __tablename__ = "daily_counters"
    __table_args__ = (UniqueConstraint("day", "name", name="uq_daily_counters_day_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[str] = mapped_column(String(10))  # UTC date, YYYY-MM-DD
    name: Mapped[str] = mapped_column(String(96))
    count: Mapped[int] = mapped_column(Integer, default=0)
