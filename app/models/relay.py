"""The message relay (issue #15): routes to the provider's services, messages, deliveries.

Messages are end users' data collected for one account: the payload is encrypted, kept
`RELAY_RETENTION_HOURS`, and deleted with the account (every row cascades from `authorizers`).
"""

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, Encrypted, utcnow

FORMATS = ("wechat-xml", "json")
MODES = ("reply", "async")


class RelayRoute(Base):
    """Where an account's messages go: a URL, a format, a mode, a scope and a type filter."""

    __tablename__ = "relay_routes"
    __table_args__ = {"sqlite_autoincrement": True}  # delivery stats name routes by id

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    url: Mapped[str] = mapped_column(String(2048))
    format: Mapped[str] = mapped_column(String(16))  # wechat-xml | json
    mode: Mapped[str] = mapped_column(String(8))  # reply | async
    # wechat-xml: the plaintext-mode token the handler checks `signature` with.
    token: Mapped[str | None] = mapped_column(Encrypted)
    # json: the HMAC-SHA256 key of X-Grantdesk-Signature.
    secret: Mapped[str | None] = mapped_column(Encrypted)
    # Scope: one platform's accounts or every platform's (NULL); within it one authorizer appid,
    # else one merchant's accounts, else every account.
    component_appid: Mapped[str | None] = mapped_column(String(64), index=True)
    merchant_id: Mapped[int | None] = mapped_column(
        ForeignKey("merchants.id", ondelete="CASCADE"), index=True
    )
    authorizer_appid: Mapped[str | None] = mapped_column(String(64), index=True)
    # "text", "image", "event.subscribe", ...; empty means every type.
    msg_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:  # never the URL's query, token or secret
        return f"<RelayRoute {self.id} {self.format}/{self.mode}>"


class RelayMessage(Base):
    """One message or event WeChat relayed for an active account, stored once (retries collapse)."""

    __tablename__ = "relay_messages"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are sent to receivers: never reused

    id: Mapped[int] = mapped_column(primary_key=True)
    authorizer_id: Mapped[int] = mapped_column(
        ForeignKey("authorizers.id", ondelete="CASCADE"), index=True
    )
    # SHA-256 of the appid with MsgId (or sender + CreateTime + event): WeChat's retries collide.
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    msg_type: Mapped[str] = mapped_column(String(64))  # "text", "event.subscribe", ...
    create_time: Mapped[int] = mapped_column(BigInteger)  # WeChat's CreateTime
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    payload: Mapped[str] = mapped_column(Encrypted)  # the decrypted XML

    deliveries: Mapped[list["RelayDelivery"]] = relationship(
        back_populates="message", cascade="all, delete-orphan", passive_deletes=True
    )


class RelayDelivery(Base):
    """One message to one route: the reply-mode forward, or an async outbox entry."""

    __tablename__ = "relay_deliveries"
    __table_args__ = (
        UniqueConstraint("message_id", "route_id"),
        Index("ix_relay_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        # The ordered outbox: the oldest pending delivery per (route, account) goes first. Only
        # pending rows: a group's check never walks its delivered history.
        Index(
            "ix_relay_deliveries_route_account_order",
            "route_id",
            "authorizer_id",
            "create_time",
            "message_id",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
        # The console's per-route counts and timings over the retention window.
        Index("ix_relay_deliveries_route_created", "route_id", "created_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Indexed by the unique (message_id, route_id), which starts with it.
    message_id: Mapped[int] = mapped_column(ForeignKey("relay_messages.id", ondelete="CASCADE"))
    # Indexed by the ordered-outbox index, which starts with it.
    route_id: Mapped[int] = mapped_column(ForeignKey("relay_routes.id", ondelete="CASCADE"))
    authorizer_id: Mapped[int] = mapped_column(
        ForeignKey("authorizers.id", ondelete="CASCADE"), index=True
    )
    mode: Mapped[str] = mapped_column(String(8))  # reply | async
    create_time: Mapped[int] = mapped_column(BigInteger)  # the message's, for ordering
    # reply mode: in_flight -> delivered | late | failed
    # async mode: pending -> delivered | dead (after RELAY_MAX_ATTEMPTS)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(200))  # never message content
    # reply mode: the validated plaintext reply, encrypted anew for each WeChat retry.
    reply: Mapped[str | None] = mapped_column(Encrypted)
    duration_ms: Mapped[int | None]  # the handler's time on the answered attempt
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]

    message: Mapped[RelayMessage] = relationship(back_populates="deliveries")
    route: Mapped[RelayRoute] = relationship()
