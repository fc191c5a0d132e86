"""Merchants: the tenants whose accounts are authorized to the provider."""

from datetime import datetime

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, utcnow


class Merchant(Base):
    __tablename__ = "merchants"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    contact_email: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None]
    # The platforms (component AppIDs) staff let it authorize; NULL: every active platform.
    platform_appids: Mapped[list[str] | None] = mapped_column(JSON)

    users: Mapped[list["User"]] = relationship(back_populates="merchant")  # noqa: F821

    def __repr__(self) -> str:
        return f"<Merchant {self.id} {self.name!r}>"
