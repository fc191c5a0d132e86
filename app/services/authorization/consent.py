"""Merchant consent to an authorization: recorded with time and user before WeChat is involved.

Consent lives in the append-only audit log (`authorization_session.consented`), so it outlives
the account's purge without holding any of the account's data.
"""

from sqlalchemy import select

from app.extensions import db
from app.models import AuditEntry, AuthorizationSession, Authorizer, Merchant, User
from app.services import audit, clock
from app.services.authorization import sessions
from app.wechat.links import AuthType

CONSENTED = "authorization_session.consented"
AUTH_TYPES = {"official_account": AuthType.OFFICIAL_ACCOUNT, "mini_program": AuthType.MINI_PROGRAM}


def start_connection(
    merchant: Merchant, user: User, *, account_type: str, set_ids, version: str
) -> AuthorizationSession:
    """Open a session for a new account of `account_type` and record the consent to it."""
    session = sessions.start_session(
        merchant, set_ids, user=user, auth_type=AUTH_TYPES[account_type]
    )
    record_consent(session, user, version=version, method="wizard")
    return session


def start_update(
    authorizer: Authorizer, user: User, set_ids, *, version: str, method: str = "update"
) -> AuthorizationSession:
    """Open an update session pinned to one account (biz_appid) and record the consent."""
    session = sessions.start_update_session(authorizer, set_ids, user=user)
    record_consent(session, user, version=version, method=method)
    return session


def record_consent(
    session: AuthorizationSession, user: User, *, version: str, method: str
) -> AuditEntry:
    """Who agreed, when, to which sets, under which consent text."""
    entry = audit.record(
        CONSENTED,
        actor=user,
        merchant_id=session.merchant_id,
        target_type="authorization_session",
        target_id=session.id,
        consent_version=version,
        method=method,
        requested_set_ids=list(session.requested_set_ids),
        consented_at=clock.now().isoformat(),
    )
    db.session.commit()
    return entry


def consent_for(session: AuthorizationSession) -> AuditEntry | None:
    """The consent recorded for a session, if any."""
    return db.session.scalar(
        select(AuditEntry).where(
            AuditEntry.action == CONSENTED,
            AuditEntry.target_type == "authorization_session",
            AuditEntry.target_id == str(session.id),
        )
    )
