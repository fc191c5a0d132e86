"""Merchant consent to an authorization: recorded with time and user before WeChat is involved.

Consent lives in the append-only audit log (`authorization_session.consented`), so it outlives
the account's purge without holding any of the account's data.
"""

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import AuditEntry, AuthorizationSession, Authorizer, GrantChange, Merchant, User
from app.services import audit, clock
from app.services.authorization import sessions
from app.wechat.links import AuthType

CONSENTED = "authorization_session.consented"
AUTH_TYPES = {"official_account": AuthType.OFFICIAL_ACCOUNT, "mini_program": AuthType.MINI_PROGRAM}


def start_connection(
    merchant: Merchant,
    user: User,
    *,
    account_type: str,
    set_ids,
    version: str,
    consent_key: str | None = None,
    component_appid: str | None = None,
) -> AuthorizationSession:
    """Open a session for a new account of `account_type` on a platform (default: the current
    one) and record the consent to it.

    `consent_key` makes the submission idempotent: sending the same form again (back button,
    double click) returns the session it already opened instead of a second one.
    """
    existing = _session_for_key(merchant, consent_key)
    if existing is not None:
        return existing
    session = sessions.start_session(
        merchant,
        set_ids,
        user=user,
        auth_type=AUTH_TYPES[account_type],
        component_appid=component_appid,
    )
    if consent_key:
        session.consent_key = consent_key
        try:
            db.session.commit()
        except IntegrityError:  # a concurrent submission of the same form won
            db.session.rollback()
            db.session.delete(session)
            db.session.commit()
            return _session_for_key(merchant, consent_key)
    record_consent(session, user, version=version, method="wizard")
    return session


def _session_for_key(merchant: Merchant, consent_key: str | None) -> AuthorizationSession | None:
    if not consent_key:
        return None
    return db.session.scalar(
        select(AuthorizationSession).where(
            AuthorizationSession.consent_key == consent_key,
            AuthorizationSession.merchant_id == merchant.id,
        )
    )


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


@dataclass(frozen=True)
class WeChatPagePlan:
    """What the merchant will see on WeChat's page for a session, and what to do there."""

    to_tick: list[int]  # listed but not ticked: WeChat pre-ticks only sets already granted
    kept: list[int]  # listed and already ticked
    dropped: list[int]  # granted now but not listed at all: confirming removes them


def wechat_page_plan(session: AuthorizationSession) -> WeChatPagePlan:
    """Compare the session's list with the account's current grant (WeChat's page behaviour)."""
    requested = sorted(set(session.requested_set_ids or []))
    granted = _current_grant(session)
    if granted is None:  # a new account: WeChat lists and ticks every requested set
        return WeChatPagePlan(to_tick=[], kept=requested, dropped=[])
    return WeChatPagePlan(
        to_tick=[i for i in requested if i not in granted],
        kept=[i for i in requested if i in granted],
        dropped=sorted(granted - set(requested)),
    )


def _current_grant(session: AuthorizationSession) -> set[int] | None:
    if not session.biz_appid:
        return None
    account = db.session.scalar(
        select(Authorizer).where(
            Authorizer.component_appid == session.component_appid,
            Authorizer.appid == session.biz_appid,
        )
    )
    if account is None or account.grant is None:
        return None
    return set(account.grant.set_ids or [])


def session_change(session: AuthorizationSession) -> GrantChange | None:
    """The grant change a completed session made (None once the account was purged)."""
    return db.session.scalar(
        select(GrantChange).where(GrantChange.session_id == session.id).order_by(GrantChange.id)
    )
