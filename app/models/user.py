"""People who sign in: merchant administrators and provider staff; invitations."""

import enum
import secrets
from datetime import datetime

from sqlalchemy import CheckConstraint, Enum, ForeignKey, String, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, utcnow
from app.models.merchant import Merchant


class Role(enum.StrEnum):
    MERCHANT_ADMIN = "merchant_admin"
    PROVIDER_STAFF = "provider_staff"


role_type = Enum(
    Role,
    name="user_role",
    native_enum=False,
    length=32,
    values_callable=lambda roles: [r.value for r in roles],
)


def new_session_nonce() -> str:
    return secrets.token_urlsafe(16)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        # A merchant admin belongs to exactly one merchant; staff belong to none.
        CheckConstraint(
            "(role = 'merchant_admin' AND merchant_id IS NOT NULL)"
            " OR (role = 'provider_staff' AND merchant_id IS NULL)",
            name="role_matches_merchant",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(120), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(role_type)
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    locale: Mapped[str | None] = mapped_column(String(10))
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    # Part of the session identifier: changing it signs the user out everywhere.
    session_nonce: Mapped[str] = mapped_column(String(32), default=new_session_nonce)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]
    # Merchant notices by email (an account needs re-authorization or was revoked); opt-out.
    account_notices: Mapped[bool] = mapped_column(default=True, server_default=true())

    merchant: Mapped[Merchant | None] = relationship(back_populates="users")

    # Flask-Login protocol
    @property
    def is_active(self) -> bool:
        return self.disabled_at is None and (
            self.merchant is None or self.merchant.disabled_at is None
        )

    is_authenticated = True
    is_anonymous = False

    def get_id(self) -> str:
        return f"{self.id}:{self.session_nonce}"

    @property
    def is_staff(self) -> bool:
        return self.role is Role.PROVIDER_STAFF

    def __repr__(self) -> str:
        return f"<User {self.id} {self.role.value}>"


class Invitation(Base):
    """A single-use, expiring link on which a merchant admin sets a password."""

    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    # Only the SHA-256 of the link token is stored; the link itself is shown once.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    accepted_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    merchant: Mapped[Merchant] = relationship()
