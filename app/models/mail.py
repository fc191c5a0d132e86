"""Outgoing email: a durable outbox the worker sends over SMTP, with retries."""

from datetime import datetime

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, Encrypted, utcnow


class OutgoingMail(Base):
    """One message: recipients and subject in clear, bodies encrypted (they may carry links)."""

    __tablename__ = "mail_outbox"
    __table_args__ = (Index("ix_mail_outbox_status_next", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    to_addresses: Mapped[list] = mapped_column(JSON)
    subject: Mapped[str] = mapped_column(String(255))
    # Invitation and reset links are secrets: bodies are encrypted and dropped once final.
    text_body: Mapped[str | None] = mapped_column(Encrypted)
    html_body: Mapped[str | None] = mapped_column(Encrypted)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # sent, failed, skipped
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
