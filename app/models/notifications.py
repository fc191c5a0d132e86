"""Alert notifications: one row per (alert occurrence, event, channel), the delivery log."""

from datetime import datetime

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow


class AlertNotification(Base):
    """A notification to one channel; the unique key makes "notify once" hold across hosts."""

    __tablename__ = "alert_notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    # kind, occurrence start, event (and reminder number), channel: inserted at most once.
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    event: Mapped[str] = mapped_column(String(16))  # opened, reminder, resolved, test
    channel: Mapped[str] = mapped_column(String(16))  # wecom, email, webhook
    payload: Mapped[dict] = mapped_column(JSON, default=dict)  # never a secret
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(200))
