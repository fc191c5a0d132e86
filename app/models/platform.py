"""The provider's third-party platforms (components): keys in custody, offer and release state."""

from datetime import datetime

from sqlalchemy import JSON, Boolean, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, Encrypted, utcnow

PLATFORM_ACTIVE = "active"
PLATFORM_RETIRED = "retired"
RELEASE_TESTING = "testing"
RELEASE_RELEASED = "released"
RELEASE_STATES = (RELEASE_TESTING, RELEASE_RELEASED)


class Platform(Base):
    """One WeChat Open Platform third-party platform served by this deployment.

    The default platform mirrors the WECHAT_* variables (they create or update it on start);
    the others are added by `flask platform add` or in the console. Secrets are write-only."""

    __tablename__ = "platforms"

    id: Mapped[int] = mapped_column(primary_key=True)
    component_appid: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str | None] = mapped_column(String(200))  # what it is for, for merchants
    logo: Mapped[bytes | None] = mapped_column(LargeBinary)
    logo_content_type: Mapped[str | None] = mapped_column(String(32))
    appsecret: Mapped[str] = mapped_column(Encrypted)
    token: Mapped[str] = mapped_column(Encrypted)
    encoding_aes_key: Mapped[str] = mapped_column(Encrypted)
    previous_encoding_aes_key: Mapped[str | None] = mapped_column(Encrypted)
    # Permission-set ids it offers and requires; empty: PLATFORM_PERMISSION_SETS and
    # REQUIRED_PERMISSION_SETS_<TYPE> (see platforms.offered_set_ids / required_set_ids).
    offered_set_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    required_set_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default=PLATFORM_ACTIVE)
    # WeChat has no API for either: staff record them from the platform's console.
    release_state: Mapped[str] = mapped_column(String(16), default=RELEASE_TESTING)
    released_at: Mapped[datetime | None]
    test_accounts: Mapped[list[str]] = mapped_column(JSON, default=list)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def active(self) -> bool:
        return self.status == PLATFORM_ACTIVE
