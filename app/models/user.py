"""People who sign in: merchant administrators and provider staff; invitations."""

import enum
import secrets
from datetime import datetime

from sqlalchemy import CheckConstraint, Enum, ForeignKey, String, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, Encrypted, utcnow
from app.models.merchant import Merchant


class Role(enum.StrEnum):
    MERCHANT_ADMIN = "merchant_admin"
    PROVIDER_STAFF = "provider_staff"
    # Sees everything of their merchant, changes nothing.
    MERCHANT_VIEWER = "merchant_viewer"


MERCHANT_ROLES = (Role.MERCHANT_ADMIN, Role.MERCHANT_VIEWER)


role_type = Enum(
    Role,
    name="user_role",
    native_enum=False,
    length=32,
    values_callable=lambda roles: [r.value for r in roles],
)


class StaffRole(enum.StrEnum):
    """What a provider staff member may do; each role includes the ones before it."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(StaffRole).index(self)


staff_role_type = Enum(
    StaffRole,
    name="staff_role",
    native_enum=False,
    length=16,
    values_callable=lambda roles: [r.value for r in roles],
)


def _default_staff_role(context) -> str | None:
    # Staff created without an explicit role are administrators (as every staff member was
    # before roles existed); merchant users have none.
    role = context.get_current_parameters().get("role")
    return StaffRole.ADMIN if role in (Role.PROVIDER_STAFF, "provider_staff") else None


def new_session_nonce() -> str:
    return secrets.token_urlsafe(16)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        # A merchant user belongs to exactly one merchant; staff belong to none.
        CheckConstraint(
            "(role IN ('merchant_admin', 'merchant_viewer') AND merchant_id IS NOT NULL)"
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
    staff_role: Mapped[StaffRole | None] = mapped_column(
        staff_role_type, default=_default_staff_role
    )
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
        # Never a valid session id: app/auth/session_cookies.py replaces it with the id of the
        # recorded session right after login_user(), and the cookie carries only that.
        return f"pending:{self.id}"

    @property
    def is_staff(self) -> bool:
        return self.role is Role.PROVIDER_STAFF

    @property
    def is_merchant_admin(self) -> bool:
        """May change their merchant's accounts and team (viewers may only look)."""
        return self.role is Role.MERCHANT_ADMIN

    def __repr__(self) -> str:
        return f"<User {self.id} {self.role.value}>"


class Invitation(Base):
    """A single-use, expiring link on which a merchant user (admin or viewer) sets a password."""

    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    # Only the SHA-256 of the link token is stored; the link itself is shown once.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The link again, encrypted, so an admin can copy or resend it while it is pending.
    token_encrypted: Mapped[str | None] = mapped_column(Encrypted)
    role: Mapped[Role] = mapped_column(role_type, default=Role.MERCHANT_ADMIN)
    invited_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    accepted_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    revoked_at: Mapped[datetime | None]

    merchant: Mapped[Merchant] = relationship()
