"""Authorizations: sessions, pre_auth_codes, authorizers, grants with history, token custody.

Lifecycle (see services/grants.py): a merchant opens an `AuthorizationSession`; each
pre_auth_code minted for it is a `PreAuthCode` row (looked up by hash); the first signal back
(browser redirect or `authorized` push) exchanges the code once and creates or updates the
`Authorizer` (the WeChat account), its `Grant` (current state) with a `GrantChange` per change,
and its `AuthorizerToken` (encrypted custody). Revocation deletes all of it (tombstone in the
audit log). Staff see conflicts and reconciliation gaps as `AttentionItem` rows.
"""

import enum
import hashlib
from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.current_platform import current_appid
from app.models.base import Base, Encrypted, utcnow


def sha256_hex(value: str) -> str:
    """Hex SHA-256, for looking up codes and tokens without storing them in the clear."""
    return hashlib.sha256(value.encode()).hexdigest()


def appid_ref(appid: str) -> str:
    """The stable pseudonym of an appid kept in tombstones and purge keys."""
    return sha256_hex("appid:" + appid)


def _enum(cls, name: str) -> Enum:
    return Enum(
        cls, name=name, native_enum=False, length=32, values_callable=lambda e: [m.value for m in e]
    )


class SessionStatus(enum.StrEnum):
    OPEN = "open"
    COMPLETED = "completed"
    EXPIRED = "expired"
    FAILED = "failed"
    MISMATCH = "mismatch"


class GrantStatus(enum.StrEnum):
    ACTIVE = "active"
    NEEDS_REAUTHORIZATION = "needs_reauthorization"
    # Revoked grants are purged at once; the value appears in webhooks and the audit tombstone.
    REVOKED = "revoked"


class AuthorizationSession(Base):
    """One attempt by a merchant to connect (or update) an account, from wizard to result."""

    __tablename__ = "authorization_sessions"
    __table_args__ = (Index("ix_authorization_sessions_status_expires_at", "status", "expires_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # Carried in redirect_uri so the browser redirect finds its session (not a secret).
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    # The QR/link token: shown again on the merchant's pages, so stored encrypted + hashed.
    link_token: Mapped[str] = mapped_column(Encrypted)
    link_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    # The platform the merchant authorizes (its component AppID).
    component_appid: Mapped[str] = mapped_column(String(64), default=current_appid)
    initiated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    auth_type: Mapped[int] = mapped_column(Integer, default=3)
    requested_set_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    biz_appid: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[SessionStatus] = mapped_column(
        _enum(SessionStatus, "session_status"), default=SessionStatus.OPEN
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    # Claimed by the one caller that exchanges the code (guarded UPDATE; see grants service).
    exchanging_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    # Outcome, for the result page and staff (scrubbed by a purge of that account).
    authorizer_appid: Mapped[str | None] = mapped_column(String(64))
    granted_set_ids: Mapped[list[int] | None] = mapped_column(JSON)
    completed_via: Mapped[str | None] = mapped_column(String(16))
    failure_reason: Mapped[str | None] = mapped_column(String(64))
    # The wizard's one-time form key: a resubmitted consent finds its session instead of a new one.
    consent_key: Mapped[str | None] = mapped_column(String(43), unique=True)
    # A redirect's auth_code whose exchange failed on a transient error, kept (encrypted) until the
    # retry job exchanges it or it lapses: an update consented without changes gets no push.
    retry_auth_code: Mapped[str | None] = mapped_column(Encrypted)
    retry_code_expires_at: Mapped[datetime | None]

    pre_auth_codes: Mapped[list["PreAuthCode"]] = relationship(
        back_populates="session", cascade="all, delete-orphan", order_by="PreAuthCode.id"
    )

    @property
    def is_update(self) -> bool:
        return self.biz_appid is not None

    def __repr__(self) -> str:
        return f"<AuthorizationSession {self.id} {self.status.value}>"


class PreAuthCode(Base):
    """A pre_auth_code minted for a session; the `authorized` push names it (PreAuthCode)."""

    __tablename__ = "pre_auth_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("authorization_sessions.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    code: Mapped[str | None] = mapped_column(Encrypted)  # nulled once used or expired
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]

    session: Mapped[AuthorizationSession] = relationship(back_populates="pre_auth_codes")


class Authorizer(Base):
    """A WeChat account (Official Account or Mini Program) authorized to the provider."""

    __tablename__ = "authorizers"
    __table_args__ = (
        # An account may authorize several of the provider's platforms: one row (grant) each.
        UniqueConstraint("component_appid", "appid", name="uq_authorizers_component_appid_appid"),
        # Ids of purged rows are never handed out again (SQLite reuses the largest rowid).
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    component_appid: Mapped[str] = mapped_column(String(64), default=current_appid)
    appid: Mapped[str] = mapped_column(String(64), index=True)
    # NULL while unassigned (e.g. an account authorized outside any session): staff decide.
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    account_type: Mapped[str | None] = mapped_column(String(32))  # official_account/mini_program
    nick_name: Mapped[str | None] = mapped_column(String(255))
    head_img: Mapped[str | None] = mapped_column(String(1024))
    principal_name: Mapped[str | None] = mapped_column(String(255))
    user_name: Mapped[str | None] = mapped_column(String(64))  # original id gh_…
    alias: Mapped[str | None] = mapped_column(String(64))
    service_type_id: Mapped[int | None]
    verify_type_id: Mapped[int | None]
    qrcode_url: Mapped[str | None] = mapped_column(String(1024))
    account_status: Mapped[int | None]
    profile_fetched_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    grant: Mapped["Grant | None"] = relationship(
        back_populates="authorizer", cascade="all, delete-orphan", uselist=False
    )
    token: Mapped["AuthorizerToken | None"] = relationship(
        back_populates="authorizer", cascade="all, delete-orphan", uselist=False
    )

    @property
    def is_verified(self) -> bool:
        return self.verify_type_id is not None and self.verify_type_id != -1

    def __repr__(self) -> str:
        return f"<Authorizer {self.id}>"


class Grant(Base):
    """The current grant of one authorizer: status and granted permission-set ids."""

    __tablename__ = "grants"
    __table_args__ = {"sqlite_autoincrement": True}  # purged with the account, ids never reused

    id: Mapped[int] = mapped_column(primary_key=True)
    authorizer_id: Mapped[int] = mapped_column(
        ForeignKey("authorizers.id", ondelete="CASCADE"), unique=True
    )
    status: Mapped[GrantStatus] = mapped_column(
        _enum(GrantStatus, "grant_status"), default=GrantStatus.ACTIVE, index=True
    )
    set_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    # Raw func_info entries incl. the undocumented confirm_info (shown to staff, never gated on).
    func_info: Mapped[list[dict]] = mapped_column(JSON, default=list)
    authorized_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None]  # last time WeChat confirmed the sets
    # The newest push CreateTime (WeChat's clock, Unix seconds) applied to this grant: an older
    # push never undoes a newer state (DESIGN §4 "Ordering").
    last_event_time: Mapped[int | None] = mapped_column(BigInteger)
    # An open update session for this account (the merchant UI's "update pending" badge).
    pending_session_id: Mapped[int | None] = mapped_column(
        ForeignKey("authorization_sessions.id", ondelete="SET NULL")
    )

    authorizer: Mapped[Authorizer] = relationship(back_populates="grant")
    changes: Mapped[list["GrantChange"]] = relationship(
        back_populates="grant", cascade="all, delete-orphan", order_by="GrantChange.id"
    )


class GrantChange(Base):
    """History: one entry per change of a grant, with the permission-set diff."""

    __tablename__ = "grant_changes"
    __table_args__ = {"sqlite_autoincrement": True}  # purged with the account, ids never reused

    id: Mapped[int] = mapped_column(primary_key=True)
    grant_id: Mapped[int] = mapped_column(ForeignKey("grants.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    # authorized, reauthorized, updated, confirmed, needs_reauthorization, recovered
    kind: Mapped[str] = mapped_column(String(32))
    set_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    added: Mapped[list[int]] = mapped_column(JSON, default=list)
    removed: Mapped[list[int]] = mapped_column(JSON, default=list)
    source: Mapped[str] = mapped_column(String(16))  # redirect, push, sweep, reconcile, staff
    session_id: Mapped[int | None] = mapped_column(
        ForeignKey("authorization_sessions.id", ondelete="SET NULL")
    )

    grant: Mapped[Grant] = relationship(back_populates="changes")


class AuthorizerToken(Base):
    """Token custody for one authorizer: encrypted tokens, a refresh lease, and health."""

    __tablename__ = "authorizer_tokens"
    __table_args__ = (
        Index("ix_authorizer_tokens_expires_lease", "access_expires_at", "lease_until"),
    )

    authorizer_id: Mapped[int] = mapped_column(
        ForeignKey("authorizers.id", ondelete="CASCADE"), primary_key=True
    )
    access_token: Mapped[str | None] = mapped_column(Encrypted)
    access_expires_at: Mapped[datetime | None]
    refresh_token: Mapped[str | None] = mapped_column(Encrypted)
    refresh_token_updated_at: Mapped[datetime | None]
    # Per-row lease: exactly one refresher across processes and hosts.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    # Health
    last_refresh_at: Mapped[datetime | None]
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error_code: Mapped[int | None]
    last_error_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]  # backoff after −1 / 45009

    authorizer: Mapped[Authorizer] = relationship(back_populates="token")


class AttentionItem(Base):
    """Something staff must look at: a mismatch, an unknown or missing authorizer, a lost token."""

    __tablename__ = "attention_items"
    __table_args__ = (
        UniqueConstraint("dedupe_key", name="uq_attention_items_dedupe_key"),
        {"sqlite_autoincrement": True},  # purged with the account, ids never reused
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # session_mismatch, unknown_authorizer, missing_authorizer, unsolicited_authorization,
    # needs_reauthorization, exchange_failed
    kind: Mapped[str] = mapped_column(String(40), index=True)
    # Open items are unique per key; resolving frees the key (set to NULL).
    dedupe_key: Mapped[str | None] = mapped_column(String(128))
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    session_id: Mapped[int | None] = mapped_column(
        ForeignKey("authorization_sessions.id", ondelete="SET NULL")
    )
    component_appid: Mapped[str] = mapped_column(String(64), default=current_appid)
    authorizer_appid: Mapped[str | None] = mapped_column(String(64))
    appid_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    resolution: Mapped[str | None] = mapped_column(String(255))
