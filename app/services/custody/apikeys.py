"""API keys for the provider's services: created by staff, stored hashed, scoped, revocable."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from limits import parse
from sqlalchemy import select

from app.extensions import db, limiter
from app.models import ApiKey, User
from app.models.api import SCOPES
from app.models.grants import sha256_hex
from app.services import DomainError, audit, clock

KEY_PREFIX = "gdk"
LAST_USED_GRANULARITY = timedelta(minutes=1)  # avoid a write per request


class InvalidScopes(DomainError):
    code = "invalid_scopes"


class InvalidRateLimit(DomainError):
    code = "invalid_rate_limit"


def create_api_key(
    name: str, scopes, *, actor: User | None = None, rate_limit: str = "600 per minute"
) -> tuple[ApiKey, str]:
    """Create a key; returns (row, secret). The secret is shown once and never stored."""
    scopes = sorted(set(scopes))
    if not scopes or set(scopes) - set(SCOPES):
        raise InvalidScopes(allowed=list(SCOPES))
    try:
        parse(rate_limit)
    except ValueError:
        raise InvalidRateLimit() from None
    prefix = secrets.token_hex(4)
    secret = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(
        name=name.strip()[:120],
        prefix=prefix,
        key_hash=sha256_hex(secret),
        scopes=scopes,
        rate_limit=rate_limit,
        created_by_id=actor.id if actor else None,
        created_at=clock.now(),
    )
    db.session.add(key)
    db.session.flush()
    audit.record(
        "api_key.created", actor=actor, target_type="api_key", target_id=key.id,
        name=key.name, scopes=scopes,
    )  # fmt: skip
    db.session.commit()
    return key, secret


def revoke_api_key(key: ApiKey, *, actor: User | None = None) -> None:
    """Revoke a key at once."""
    _key_cache.clear()
    if key.revoked_at is None:
        key.revoked_at = clock.now()
        audit.record(
            "api_key.revoked", actor=actor, target_type="api_key", target_id=key.id, name=key.name
        )
    db.session.commit()


def list_api_keys() -> list[ApiKey]:
    """Every key, newest first (for the staff console)."""
    return list(db.session.scalars(select(ApiKey).order_by(ApiKey.id.desc())))


@dataclass(frozen=True)
class ApiKeyView:
    """What a request needs of a verified key (cached, detached from any DB session)."""

    id: int
    name: str
    scopes: tuple[str, ...]
    rate_limit: str


# Verified keys per process for a few seconds: a revocation elsewhere takes effect within
# KEY_CACHE_TTL (at once in the revoking process). Saves a query on every API call.
KEY_CACHE_TTL = 5.0
_key_cache: dict[str, tuple[float, ApiKeyView]] = {}


def authenticate(secret: str | None) -> ApiKeyView | None:
    """The active key for a presented secret, or None."""
    if not secret or not secret.startswith(KEY_PREFIX + "_"):
        return None
    digest = sha256_hex(secret)
    cached = _key_cache.get(digest)
    if cached and time.monotonic() - cached[0] < KEY_CACHE_TTL:
        return cached[1]
    key = db.session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if key is None or key.revoked_at is not None:
        _key_cache.pop(digest, None)
        return None
    view = ApiKeyView(key.id, key.name, tuple(key.scopes or ()), key.rate_limit)
    _key_cache[digest] = (time.monotonic(), view)
    now = clock.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_GRANULARITY:
        key.last_used_at = now
        db.session.commit()
    return view


def within_rate_limit(key: ApiKeyView) -> tuple[bool, int]:
    """Count one request against the key's limit; returns (allowed, seconds until reset)."""
    item = parse(key.rate_limit)
    allowed = limiter.limiter.hit(item, "api_key", str(key.id))
    if allowed:
        return True, 0
    reset_at, _ = limiter.limiter.get_window_stats(item, "api_key", str(key.id))
    return False, max(1, int(reset_at - time.time()) + 1)


def has_scope(key: ApiKeyView, scope: str) -> bool:
    return scope in (key.scopes or [])
