"""Server-side sign-in sessions and per-device remember-me tokens.

A browser holds only random ids; the database holds their SHA-256 digests, so a leaked table
signs nobody in. Revoking a row ends that browser's session and its remember-me token at once.
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import joinedload

from app.extensions import db
from app.models import User, UserSession
from app.services import audit, clock

# "Last seen" is written at most this often per session, not on every request.
TOUCH_INTERVAL = timedelta(minutes=1)
USER_AGENT_MAX = 255


@dataclass(frozen=True)
class SessionPolicy:
    idle: timedelta  # a session without remember-me ends this long after it was last seen
    remember: timedelta  # a remembered device stays signed in this long after its last use


@dataclass(frozen=True)
class Started:
    record: UserSession
    token: str  # goes into the session cookie
    remember_token: str | None  # goes into the remember-me cookie (None: not remembered)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_secret() -> str:
    return secrets.token_urlsafe(32)


def start(
    user: User,
    *,
    remember: bool,
    policy: SessionPolicy,
    ip_address: str | None,
    user_agent: str | None,
) -> Started:
    """Record a new sign-in of `user` on one browser and return the secrets for its cookies."""
    now = clock.now()
    token = _new_secret()
    remember_token = _new_secret() if remember else None
    record = UserSession(
        user_id=user.id,
        token_hash=_digest(token),
        remember_hash=_digest(remember_token) if remember_token else None,
        created_at=now,
        last_seen_at=now,
        expires_at=now + (policy.remember if remember else policy.idle),
        ip_address=(ip_address or None) and ip_address[:45],
        user_agent=(user_agent or "")[:USER_AGENT_MAX],
    )
    db.session.add(record)
    db.session.commit()
    return Started(record, token, remember_token)


def _active(condition) -> UserSession | None:
    record = db.session.scalar(
        select(UserSession)
        .options(joinedload(UserSession.user))  # one round trip per request, user included
        .where(condition, UserSession.revoked_at.is_(None), UserSession.expires_at > clock.now())
    )
    if record is None or not record.user.is_active:
        return None
    return record


def find_active(token: str) -> UserSession | None:
    """The live session behind a cookie id, or None (unknown, revoked, expired, disabled)."""
    if not token:
        return None
    return _active(UserSession.token_hash == _digest(token))


def touch(record: UserSession, policy: SessionPolicy) -> None:
    """Note activity, at most once per TOUCH_INTERVAL; an idle session's expiry slides along."""
    now = clock.now()
    if now - record.last_seen_at < TOUCH_INTERVAL:
        return
    if db.session.new or db.session.dirty or db.session.deleted:
        return  # never commit someone else's unfinished work; the next request will touch
    values = {"last_seen_at": now}
    if not record.remembered:
        values["expires_at"] = now + policy.idle
    # Guarded so that concurrent requests of one browser write once.
    db.session.execute(
        update(UserSession)
        .where(UserSession.id == record.id, UserSession.last_seen_at < now - TOUCH_INTERVAL)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def resume(remember_token: str, policy: SessionPolicy) -> Started | None:
    """Sign a remembered device back in; both of its secrets are replaced (the old ones die)."""
    if not remember_token:
        return None
    record = _active(UserSession.remember_hash == _digest(remember_token))
    if record is None:
        return None
    token, new_remember_token = _new_secret(), _new_secret()
    now = clock.now()
    # Guarded on the old digest: of two requests racing with one token, only one rotates it.
    rotated = db.session.execute(
        update(UserSession)
        .where(UserSession.id == record.id, UserSession.remember_hash == record.remember_hash)
        .values(
            token_hash=_digest(token),
            remember_hash=_digest(new_remember_token),
            last_seen_at=now,
            expires_at=now + policy.remember,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    if rotated != 1:
        return None
    db.session.refresh(record)
    return Started(record, token, new_remember_token)


def revoke(record: UserSession, *, actor: User | None = None) -> None:
    """End one session (and the remember-me token of its device)."""
    if record.revoked_at is None:
        record.revoked_at = clock.now()
        audit.record(
            "session.revoked",
            actor=actor,
            merchant_id=record.user.merchant_id,
            target_type="user_session",
            target_id=record.id,
        )
    db.session.commit()


def revoke_token(token: str | None = None, remember_token: str | None = None) -> None:
    """Revoke whatever sessions these cookie secrets name (sign-out of one browser)."""
    digests = [_digest(t) for t in (token, remember_token) if t]
    if not digests:
        return
    db.session.execute(
        update(UserSession)
        .where(
            (UserSession.token_hash.in_(digests)) | (UserSession.remember_hash.in_(digests)),
            UserSession.revoked_at.is_(None),
        )
        .values(revoked_at=clock.now())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def revoke_all(user: User, *, actor: User | None = None, commit: bool = True) -> int:
    """End every session of `user` (password change, "sign out everywhere", disabling)."""
    count = db.session.execute(
        update(UserSession)
        .where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))
        .values(revoked_at=clock.now())
        .execution_options(synchronize_session=False)
    ).rowcount
    audit.record(
        "session.revoked_all",
        actor=actor,
        merchant_id=user.merchant_id,
        target_type="user",
        target_id=user.id,
        count=count,
    )
    if commit:
        db.session.commit()
    return count


def list_active(user: User) -> list[UserSession]:
    """The user's live sessions, most recently seen first."""
    return list(
        db.session.scalars(
            select(UserSession)
            .where(
                UserSession.user_id == user.id,
                UserSession.revoked_at.is_(None),
                UserSession.expires_at > clock.now(),
            )
            .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc())
        )
    )


def find_own(user: User, session_id: int) -> UserSession | None:
    """One of the user's own live sessions by its row id (never another user's)."""
    return next((s for s in list_active(user) if s.id == session_id), None)


_BROWSERS = [
    ("MicroMessenger", "WeChat"),
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Chromium/", "Chromium"),
    ("Safari/", "Safari"),
]
_SYSTEMS = [
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("Android", "Android"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("Macintosh", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
]


def describe_device(user_agent: str) -> str:
    """A short "Browser on System" label from a User-Agent string (the raw string as a fallback)."""
    browser = next((name for marker, name in _BROWSERS if marker in user_agent), None)
    system = next((name for marker, name in _SYSTEMS if marker in user_agent), None)
    if browser and system:
        return f"{browser} · {system}"
    return browser or system or (user_agent[:60] if user_agent else "?")
