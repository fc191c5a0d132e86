"""Platform credentials in custody: the verify ticket, the component token, health and job runs."""

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, Encrypted, utcnow


class VerifyTicket(Base):
    """The latest component_verify_ticket of a component (one row per component appid)."""

    __tablename__ = "verify_tickets"

    id: Mapped[int] = mapped_column(primary_key=True)
    component_appid: Mapped[str] = mapped_column(String(64), unique=True)
    value: Mapped[str] = mapped_column(Encrypted)
    create_time: Mapped[int] = mapped_column(BigInteger)  # the push's CreateTime (orders pushes)
    received_at: Mapped[datetime]  # when this ticket value first arrived
    expires_at: Mapped[datetime]  # arrival + 12 h, explicit data
    last_push_at: Mapped[datetime]  # any push, even a repeat of the same value (watchdog)
    pushes: Mapped[int] = mapped_column(Integer, default=1)


class ComponentCredential(Base):
    """The component_access_token and the lease that lets exactly one process refresh it."""

    __tablename__ = "component_credentials"

    id: Mapped[int] = mapped_column(primary_key=True)
    component_appid: Mapped[str] = mapped_column(String(64), unique=True)
    token: Mapped[str | None] = mapped_column(Encrypted)
    # SHA-256 of the token: compare-and-swap invalidation matches on it, never on ciphertext.
    token_hash: Mapped[str | None] = mapped_column(String(64))
    obtained_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None]
    refreshes: Mapped[int] = mapped_column(Integer, default=0)


class HealthAlert(Base):
    """A condition staff must see (ticket pushes stalled, foreign refresh, quota, ...), one
    row per kind and platform."""

    __tablename__ = "health_alerts"
    __table_args__ = (
        UniqueConstraint("kind", "component_appid", name="uq_health_alerts_kind_component_appid"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    component_appid: Mapped[str] = mapped_column(String(64))
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    count: Mapped[int] = mapped_column(Integer, default=1)
    resolved_at: Mapped[datetime | None]
    details: Mapped[dict] = mapped_column(JSON, default=dict)

    @property
    def active(self) -> bool:
        return self.resolved_at is None


class JobRun(Base):
    """The last run of each scheduled job, for the staff console and `flask health`."""

    __tablename__ = "job_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(16))  # running, ok, error
    detail: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str | None] = mapped_column(String(128))
    runs: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_success_at: Mapped[datetime | None]  # for grantdesk_job_last_success_timestamp_seconds
