"""Forgotten passwords: a single-use, expiring link by email (only its hash is stored);
asking gives the same answer whether or not the address has an account."""

from __future__ import annotations

import secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update

from app.extensions import db
from app.models import PasswordReset, User
from app.services import DomainError, accounts, audit, clock
from app.services.access.links import public_url
from app.services.notify import mail


class ResetInvalid(DomainError):
    code = "reset_invalid"


def request_reset(email: str, *, ip: str | None = None) -> None:
    """Email a reset link if an active account has this address; otherwise do nothing."""
    user = accounts.find_user_by_email(email)
    if user is None or not user.is_active:
        return
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
