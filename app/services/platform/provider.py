"""The provider's profile merchants see: display name (as WeChat shows the platform) and logo."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.models import ProviderProfile, User
from app.services import DomainError, audit, clock

MAX_NAME = 64
MAX_LOGO_BYTES = 200_000
# Raster formats only: an SVG logo could carry script into every merchant page.
LOGO_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
}


class InvalidProfile(DomainError):
    code = "invalid_provider_profile"


@dataclass(frozen=True)
class Provider:
    """What templates and emails need: the name (None when unset) and whether a logo exists."""

    name: str | None
    has_logo: bool
    version: int


def current_provider() -> Provider:
    """The stored profile, else PROVIDER_NAME from the environment, else no name."""
    row = _row()
    if row is not None:
        version = int(row.updated_at.timestamp())
        return Provider(row.display_name, row.logo is not None, version)
    return Provider(current_app.config.get("PROVIDER_NAME") or None, False, 0)


def logo() -> tuple[bytes, str] | None:
    """The logo bytes and their content type, if staff uploaded one."""
    row = _row()
    if row is None or row.logo is None:
        return None
    return row.logo, row.logo_content_type or "application/octet-stream"


def logo_content_type(data: bytes) -> str:
    """The logo's type from its first bytes; InvalidProfile unless PNG or JPEG."""
    for signature, content_type in LOGO_SIGNATURES.items():
        if data.startswith(signature):
            return content_type
    raise InvalidProfile("logo must be a PNG or JPEG image")


def update_provider(
    display_name: str,
    *,
    logo_bytes: bytes | None = None,
    remove_logo: bool = False,
    actor: User | None = None,
) -> ProviderProfile:
    """Set the name (and optionally the logo); validated before anything is written."""
    name = " ".join((display_name or "").split())
    if not name or len(name) > MAX_NAME:
        raise InvalidProfile(f"display name must be 1-{MAX_NAME} characters")
    content_type = None
    if logo_bytes:
        if len(logo_bytes) > MAX_LOGO_BYTES:
            raise InvalidProfile("logo is too large")
        content_type = logo_content_type(logo_bytes)
    row = _row() or ProviderProfile(display_name=name)
    row.display_name, row.updated_at = name, clock.now()
    row.updated_by_id = actor.id if actor else None
    if logo_bytes:
        row.logo, row.logo_content_type = logo_bytes, content_type
    elif remove_logo:
        row.logo = row.logo_content_type = None
    db.session.add(row)
    db.session.flush()
    audit.record(
        "provider.updated", actor=actor, target_type="provider", target_id=row.id,
        display_name=name, logo=row.logo is not None,
    )  # fmt: skip
    db.session.commit()
    return row


def _row() -> ProviderProfile | None:
    return db.session.scalar(select(ProviderProfile).order_by(ProviderProfile.id).limit(1))


def monogram_png(rgb: tuple[int, int, int] = (18, 110, 130), size: int = 96) -> bytes:
    """A plain square PNG (no imaging library needed): the demo's placeholder logo."""
    row = b"\x00" + bytes(rgb) * size
    raw = row * size

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )
