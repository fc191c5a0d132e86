"""Merchants, users, passwords and invitations."""

import hashlib
import secrets
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select

from app.extensions import db
from app.models import Invitation, Merchant, Role, User, utcnow
from app.models.user import new_session_nonce
from app.services import DomainError, audit

MIN_PASSWORD_LENGTH = 10

_hasher = PasswordHasher()
# Tests trade strength for speed; the parameters live in the hash, so verification still works.
_fast_hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
# Verifying against a dummy hash when the user is unknown keeps timings alike.
_DUMMY_HASH = _hasher.hash("not-a-real-password")
_active_hasher = _hasher


class InvitationInvalid(DomainError):
    code = "invitation_invalid"


class EmailTaken(DomainError):
    code = "email_taken"


class WeakPassword(DomainError):
    code = "weak_password"


class WrongPassword(DomainError):
    code = "wrong_password"


def use_fast_hashing(enabled: bool) -> None:
    """Switch to cheap Argon2 parameters (tests only)."""
    global _active_hasher
    _active_hasher = _fast_hasher if enabled else _hasher


def hash_password(password: str) -> str:
    """Hash a password with Argon2id."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(min_length=MIN_PASSWORD_LENGTH)
    return _active_hasher.hash(password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def normalize_email(email: str) -> str:
    return email.strip().lower()


def find_user_by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(User.email == normalize_email(email)))


def authenticate(email: str, password: str) -> User | None:
    """Return the active user with these credentials, or None (without saying which was wrong)."""
    user = find_user_by_email(email)
    if user is None:
        _verify(_DUMMY_HASH, password)
        return None
    if not _verify(user.password_hash, password) or not user.is_active:
        return None
    if _hasher.check_needs_rehash(user.password_hash) and _active_hasher is _hasher:
        user.password_hash = _hasher.hash(password)
    user.last_login_at = utcnow()
    audit.record("user.signed_in", actor=user, merchant_id=user.merchant_id)
    db.session.commit()
    return user


def _ensure_email_free(email: str) -> None:
    if find_user_by_email(email) is not None:
        raise EmailTaken(email=email)


def create_staff_user(email: str, password: str, name: str = "", actor=None) -> User:
    """Create a provider staff account."""
    _ensure_email_free(email)
    user = User(
        email=normalize_email(email),
        name=name,
        password_hash=hash_password(password),
        role=Role.PROVIDER_STAFF,
    )
    db.session.add(user)
    db.session.flush()
    audit.record(
        "user.created", actor=actor, target_type="user", target_id=user.id, role=user.role.value
    )
    db.session.commit()
    return user


def create_merchant(name: str, contact_email: str | None = None, actor=None) -> Merchant:
    """Create a merchant (tenant)."""
    merchant = Merchant(name=name.strip(), contact_email=contact_email or None)
    db.session.add(merchant)
    db.session.flush()
    audit.record(
        "merchant.created",
        actor=actor,
        merchant_id=merchant.id,
        target_type="merchant",
        target_id=merchant.id,
    )
    db.session.commit()
    return merchant


def token_hash(token: str) -> str:
    """The SHA-256 under which a link token is stored and looked up."""
    return hashlib.sha256(token.encode()).hexdigest()


_token_hash = token_hash


def invite_admin(
    merchant: Merchant,
    email: str,
    *,
    actor=None,
    ttl_hours: int = 72,
    role: Role = Role.MERCHANT_ADMIN,
) -> str:
    """Create a single-use invitation and return its secret token (looked up by hash)."""
    if role not in (Role.MERCHANT_ADMIN, Role.MERCHANT_VIEWER):
        raise ValueError(f"merchants have no {role} role")
    _ensure_email_free(email)
    token = secrets.token_urlsafe(32)
    invitation = Invitation(
        merchant_id=merchant.id,
        email=normalize_email(email),
        token_hash=_token_hash(token),
        token_encrypted=token,
        role=role,
        invited_by_id=actor.id if isinstance(actor, User) else None,
        expires_at=utcnow() + timedelta(hours=ttl_hours),
    )
    db.session.add(invitation)
    db.session.flush()
    audit.record(
        "invitation.created",
        actor=actor,
        merchant_id=merchant.id,
        target_type="invitation",
        target_id=invitation.id,
        email=invitation.email,
        role=role.value,
    )
    db.session.commit()
    return token


def find_open_invitation(token: str) -> Invitation:
    """The invitation behind a link, if it is still usable; else InvitationInvalid."""
    invitation = db.session.scalar(
        select(Invitation).where(Invitation.token_hash == _token_hash(token))
    )
    if invitation is None:
        raise InvitationInvalid(reason="unknown")
    if invitation.accepted_at is not None:
        raise InvitationInvalid(reason="used")
    if invitation.revoked_at is not None:
        raise InvitationInvalid(reason="revoked")
    if invitation.expires_at <= utcnow():
        raise InvitationInvalid(reason="expired")
    return invitation


def accept_invitation(token: str, password: str, name: str = "") -> User:
    """Turn an invitation into a merchant admin account; the link cannot be used again."""
    invitation = find_open_invitation(token)
    _ensure_email_free(invitation.email)
    user = User(
        email=invitation.email,
        name=name,
        password_hash=hash_password(password),
        role=invitation.role or Role.MERCHANT_ADMIN,
        merchant_id=invitation.merchant_id,
    )
    db.session.add(user)
    db.session.flush()
    # The guarded UPDATE makes a concurrent second acceptance fail instead of creating twice.
    claimed = db.session.execute(
        Invitation.__table__.update()
        .where(
            Invitation.id == invitation.id,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
        .values(accepted_at=utcnow(), accepted_user_id=user.id, token_encrypted=None)
    ).rowcount
    if claimed != 1:
        db.session.rollback()
        raise InvitationInvalid(reason="used")
    audit.record(
        "invitation.accepted",
        actor=user,
        merchant_id=user.merchant_id,
        target_type="invitation",
        target_id=invitation.id,
    )
    db.session.commit()
    return user


def change_password(user: User, current_password: str, new_password: str) -> None:
    """Change a password; every other session of this user is signed out."""
    if not _verify(user.password_hash, current_password):
        raise WrongPassword()
    user.password_hash = hash_password(new_password)
    user.session_nonce = new_session_nonce()
    audit.record(
        "user.password_changed",
        actor=user,
        merchant_id=user.merchant_id,
        target_type="user",
        target_id=user.id,
    )
    db.session.commit()


def reset_password(user: User, new_password: str) -> None:
    """Set a password from a reset link; every session of this user is signed out."""
    user.password_hash = hash_password(new_password)
    user.session_nonce = new_session_nonce()
    audit.record(
        "user.password_reset",
        actor=user,
        merchant_id=user.merchant_id,
        target_type="user",
        target_id=user.id,
    )


def update_preferences(user: User, *, locale: str | None = None, timezone: str | None = None):
    """Save a user's language and time zone."""
    if locale is not None:
        user.locale = locale
    if timezone is not None:
        user.timezone = timezone
    db.session.commit()


def set_user_disabled(user: User, disabled: bool, actor=None) -> None:
    """Disable or re-enable a user; disabling signs them out."""
    user.disabled_at = utcnow() if disabled else None
    user.session_nonce = new_session_nonce()
    audit.record(
        "user.disabled" if disabled else "user.enabled",
        actor=actor,
        merchant_id=user.merchant_id,
        target_type="user",
        target_id=user.id,
    )
    db.session.commit()


def count_users() -> int:
    return db.session.scalar(select(func.count(User.id)))
