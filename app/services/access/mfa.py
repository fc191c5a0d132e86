"""Staff two-factor sign-in: TOTP enrollment, codes checked once each, recovery codes."""

import hashlib
import hmac
import re
import secrets

import pyotp
from sqlalchemy import delete, func, or_, select, update

from app.extensions import db
from app.models import RecoveryCode, TotpCredential, User
from app.models.user import new_session_nonce
from app.services import DomainError, audit, clock
from app.services.access import sessions

ISSUER = "Grantdesk"
MODES = ("required", "optional")
STEP_SECONDS = 30
WINDOW = 1  # accept the previous and the next time step too (clock drift, slow typing)
RECOVERY_CODE_COUNT = 10
# No 0/o, 1/l/i: recovery codes are read off paper. 16 characters of 31 is about 79 bits.
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
_TOTP_FORMAT = re.compile(r"\d{6}")


class InvalidCode(DomainError):
    code = "invalid_code"


class AlreadyEnrolled(DomainError):
    code = "already_enrolled"


class NotEnrolled(DomainError):
    code = "not_enrolled"


def check_mode(mode: str) -> str:
    """GRANTDESK_STAFF_MFA's value, or a ValueError naming the choices."""
    if mode not in MODES:
        raise ValueError(f"GRANTDESK_STAFF_MFA must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


def _credential(user: User) -> TotpCredential | None:
    return db.session.scalar(select(TotpCredential).where(TotpCredential.user_id == user.id))


def is_enrolled(user: User) -> bool:
    """Whether the user signs in with a confirmed authenticator."""
    credential = _credential(user)
    return credential is not None and credential.confirmed_at is not None


def must_enroll(user: User, mode: str) -> bool:
    """Whether a staff member has to set up two-factor sign-in before using the console."""
    return user.is_staff and check_mode(mode) == "required" and not is_enrolled(user)


def start_enrollment(user: User) -> TotpCredential:
    """The pending (unconfirmed) secret for this user, created on first call."""
    credential = _credential(user)
    if credential is not None and credential.confirmed_at is not None:
        raise AlreadyEnrolled()
    if credential is None:
        credential = TotpCredential(user_id=user.id, secret=pyotp.random_base32())
        db.session.add(credential)
        db.session.commit()
    return credential


def provisioning_uri(user: User, credential: TotpCredential) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(credential.secret).provisioning_uri(name=user.email, issuer_name=ISSUER)


def confirm_enrollment(user: User, code: str) -> list[str]:
    """Turn on two-factor sign-in with a first valid code; returns the recovery codes (once)."""
    credential = _credential(user)
    if credential is None or credential.confirmed_at is not None:
        raise NotEnrolled() if credential is None else AlreadyEnrolled()
    _use_totp(credential, code)
    credential.confirmed_at = clock.now()
    codes = _replace_recovery_codes(user)
    audit.record("user.mfa_enabled", actor=user, target_type="user", target_id=user.id)
    db.session.commit()
    return codes


def verify_second_factor(user: User, code: str) -> str:
    """Accept a current authenticator code or an unused recovery code ("totp" / "recovery")."""
    credential = _credential(user)
    if credential is None or credential.confirmed_at is None:
        raise NotEnrolled()
    code = (code or "").strip().replace(" ", "")
    if _TOTP_FORMAT.fullmatch(code):
        _use_totp(credential, code)
        db.session.commit()
        return "totp"
    _use_recovery_code(user, code)
    audit.record("user.recovery_code_used", actor=user, target_type="user", target_id=user.id)
    db.session.commit()
    return "recovery"


def disable(user: User, code: str, actor: User | None = None) -> None:
    """Turn two-factor sign-in off after a current code (or recovery code) proves possession."""
    verify_second_factor(user, code)
    db.session.execute(delete(TotpCredential).where(TotpCredential.user_id == user.id))
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    audit.record("user.mfa_disabled", actor=actor or user, target_type="user", target_id=user.id)
    db.session.commit()


def reset(user: User, actor: User) -> None:
    """An administrator removes a staff member's lost authenticator; they enroll again at the
    next sign-in (when required) and every session they have is signed out."""
    db.session.execute(delete(TotpCredential).where(TotpCredential.user_id == user.id))
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    user.session_nonce = new_session_nonce()
    sessions.revoke_all(user, actor=actor, commit=False)  # the server-side sessions too
    audit.record("user.mfa_reset", actor=actor, target_type="user", target_id=user.id)
    db.session.commit()


def remaining_recovery_codes(user: User) -> int:
    """How many recovery codes are still unused."""
    unused = select(func.count(RecoveryCode.id)).where(
        RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)
    )
    return db.session.scalar(unused)


def _matching_step(secret: str, code: str) -> int | None:
    """The time step within ±WINDOW whose code equals `code`, compared in constant time."""
    totp = pyotp.TOTP(secret, interval=STEP_SECONDS)
    current = int(clock.now().timestamp()) // STEP_SECONDS
    matched = None
    # Every candidate is compared (no early exit), so timing says nothing about which matched.
    for step in range(current - WINDOW, current + WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step).encode(), code.encode()):
            matched = step
    return matched


def _use_totp(credential: TotpCredential, code: str) -> None:
    code = (code or "").strip().replace(" ", "")
    step = _matching_step(credential.secret, code) if _TOTP_FORMAT.fullmatch(code) else None
    if step is None:
        raise InvalidCode()
    # Guarded UPDATE: of two requests racing with the same code, exactly one wins; a code of
    # an earlier step than the last one used is refused too.
    claimed = db.session.execute(
        update(TotpCredential)
        .where(
            TotpCredential.id == credential.id,
            or_(TotpCredential.last_used_step.is_(None), TotpCredential.last_used_step < step),
        )
        .values(last_used_step=step)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        db.session.rollback()
        raise InvalidCode(reason="reused")
    db.session.refresh(credential)


def _hash_recovery_code(code: str) -> str:
    normalized = re.sub(r"[^a-z0-9]", "", code.lower())
    return hashlib.sha256(normalized.encode()).hexdigest()


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(16))
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def _replace_recovery_codes(user: User) -> list[str]:
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    db.session.add_all(
        RecoveryCode(user_id=user.id, code_hash=_hash_recovery_code(code)) for code in codes
    )
    return codes


def _use_recovery_code(user: User, code: str) -> None:
    if not re.sub(r"[^a-z0-9]", "", code.lower()):
        raise InvalidCode()
    claimed = db.session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _hash_recovery_code(code),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=clock.now())
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        db.session.rollback()
        raise InvalidCode()
