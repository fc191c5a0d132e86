"""Forgotten passwords: a single-use, expiring link by email (only its hash is stored).

Asking only records the request (`request_reset`), the same work for every address, so the
answer and its timing say nothing about which addresses have accounts; the worker's
`password_reset_requests` job then mails a link to those that do.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, select, update

from app.extensions import db
from app.models import PasswordReset, PasswordResetRequest, User
from app.services import DomainError, accounts, audit, clock
from app.services.access.links import public_url
from app.services.notify import mail


class ResetInvalid(DomainError):
    code = "reset_invalid"


def request_reset(email: str, *, ip: str | None = None) -> None:
    """Record a request for a reset link (for any address: existence is decided later)."""
    db.session.add(
        PasswordResetRequest(
            email=accounts.normalize_email(email)[:254], ip=ip, requested_at=clock.now()
        )
    )
    db.session.commit()


def process_requests(*, limit: int = 100) -> int:
    """Worker job: mail a link for each recorded request whose address has an active account."""
    sent = 0
    ids = db.session.scalars(
        select(PasswordResetRequest.id).order_by(PasswordResetRequest.id).limit(limit)
    ).all()
    for request_id in ids:
        pending = db.session.get(PasswordResetRequest, request_id)
        # Deleting is the claim: of several workers, only one gets rowcount 1.
        claimed = db.session.execute(
            delete(PasswordResetRequest).where(PasswordResetRequest.id == request_id)
        ).rowcount
        if claimed != 1 or pending is None:
            db.session.rollback()
            continue
        user = accounts.find_user_by_email(pending.email)
        if user is None or not user.is_active:
            db.session.commit()
            continue
        _send_link(user, pending.ip)
        sent += 1
    return sent


def _send_link(user: User, ip: str | None) -> None:
    token = secrets.token_urlsafe(32)
    ttl = current_app.config["PASSWORD_RESET_TTL_MINUTES"]
    now = clock.now()
    db.session.add(
        PasswordReset(
            user_id=user.id,
            token_hash=accounts.token_hash(token),
            created_at=now,
            expires_at=now + timedelta(minutes=ttl),
        )
    )
    audit.record("user.password_reset_requested", actor=user, merchant_id=user.merchant_id,
                 target_type="user", target_id=user.id, ip=ip)  # fmt: skip
    db.session.commit()
    provider = current_app.config.get("PROVIDER_NAME") or "Grantdesk"
    mail.send_template(
        [user.email],
        f"重置密码 · Reset your password ({provider})",
        "password_reset",
        link=public_url("password_reset.reset", token=token),
        provider=provider,
        ttl_minutes=ttl,
    )


def find_open_reset(token: str) -> PasswordReset:
    """The reset behind a link if it can still be used; else ResetInvalid."""
    reset = db.session.scalar(
        select(PasswordReset).where(PasswordReset.token_hash == accounts.token_hash(token))
    )
    if reset is None or reset.used_at is not None or reset.expires_at <= clock.now():
        raise ResetInvalid()
    if not reset.user.is_active:
        raise ResetInvalid()
    return reset


def reset_password(token: str, new_password: str) -> User:
    """Set a new password from a link; the link and every other open link stop working."""
    reset = find_open_reset(token)
    user = reset.user
    accounts.reset_password(user, new_password)  # may raise WeakPassword before any change
    # The guarded UPDATE makes a second, concurrent use of the same link fail.
    claimed = db.session.execute(
        update(PasswordReset)
        .where(PasswordReset.id == reset.id, PasswordReset.used_at.is_(None))
        .values(used_at=clock.now())
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        db.session.rollback()
        raise ResetInvalid()
    db.session.execute(
        update(PasswordReset)
        .where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None))
        .values(used_at=clock.now())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return user
