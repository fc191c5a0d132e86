"""Authorization sessions: opening one, its public links, its pre_auth_codes, and its expiry.

A session is a merchant's request to authorize a new account (or to update one account's grant).
This module owns the link our QR codes encode, the WeChat links built on a fresh pre_auth_code
per view (WeChat burns a code once it is scanned), the per-link limit on those views, and when a
session or its codes expire. Completing a session is the job of `grants`.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from flask import current_app
from limits import parse_many
from sqlalchemy import select, update

from app.current_platform import platform_detail
from app.extensions import db, limiter
from app.models import (
    AuthorizationSession,
    Authorizer,
    Grant,
    Merchant,
    PreAuthCode,
    SessionStatus,
    User,
)
from app.models.grants import sha256_hex
from app.services import DomainError, audit, clock
from app.services.authorization.authorizers import AuthorizerNotFound
from app.services.platform import platforms
from app.services.platform.credentials import call_with_component_token
from app.services.platform.platforms import current_appid, using, wechat_client
from app.wechat import links

SESSION_TTL = timedelta(hours=24)


class SessionNotFound(DomainError):
    code = "session_not_found"


class SessionClosed(DomainError):
    code = "session_closed"


class InvalidRequest(DomainError):
    code = "invalid_request"


class TooManyViews(DomainError):
    """The link was viewed more often than CONNECT_LINK_RATE_LIMIT allows; details: retry_after."""

    code = "too_many_views"


def start_session(
    merchant: Merchant,
    set_ids,
    *,
    user: User | None = None,
    auth_type: int = links.AuthType.BOTH,
    biz_appid: str | None = None,
    component_appid: str | None = None,
    ttl: timedelta = SESSION_TTL,
) -> AuthorizationSession:
    """Open an authorization session to a platform (`component_appid`, default: the current
    one); its link token is `session.link_token`."""
    component_appid = component_appid or current_appid()
    if not platforms.known(component_appid):
        raise InvalidRequest("unknown platform")
    set_ids = sorted({int(i) for i in set_ids})
    if not set_ids:
        raise InvalidRequest("choose at least one permission set")
    if int(auth_type) not in (1, 2, 3):
        raise InvalidRequest("auth_type must be 1, 2 or 3")
    token = secrets.token_urlsafe(24)
    session = AuthorizationSession(
        public_id=secrets.token_urlsafe(16),
        link_token=token,
        link_token_hash=sha256_hex(token),
        merchant_id=merchant.id,
        component_appid=component_appid,
        initiated_by_id=user.id if user else None,
        auth_type=int(auth_type),
        requested_set_ids=set_ids,
        biz_appid=biz_appid or None,
        created_at=clock.now(),
        expires_at=clock.now() + ttl,
    )
    db.session.add(session)
    db.session.flush()
    audit.record(
        "authorization_session.started",
        actor=user,
        merchant_id=merchant.id,
        target_type="authorization_session",
        target_id=session.id,
        requested_set_ids=set_ids,
        update=bool(biz_appid),
        **platform_detail(component_appid),
    )
    db.session.commit()
    return session


def start_update_session(
    authorizer: Authorizer, set_ids, *, user: User | None = None
) -> AuthorizationSession:
    """Open a session that updates one account's grant (biz_appid); marks the grant pending."""
    if authorizer.merchant_id is None or authorizer.grant is None:
        raise AuthorizerNotFound()
    auth_type = 2 if authorizer.account_type == "mini_program" else 1
    merchant = db.session.get(Merchant, authorizer.merchant_id)
    session = start_session(
        merchant,
        set_ids,
        user=user,
        auth_type=auth_type,
        biz_appid=authorizer.appid,
        component_appid=authorizer.component_appid,
    )
    authorizer.grant.pending_session_id = session.id
    db.session.commit()
    return session


def find_session_by_link(token: str) -> AuthorizationSession:
    """The session behind a public link token, else SessionNotFound."""
    session = db.session.scalar(
        select(AuthorizationSession).where(
            AuthorizationSession.link_token_hash == sha256_hex(token)
        )
    )
    if session is None:
        raise SessionNotFound()
    return session


def find_session(public_id: str | None) -> AuthorizationSession:
    """The session named in a redirect_uri, else SessionNotFound."""
    session = db.session.scalar(
        select(AuthorizationSession).where(AuthorizationSession.public_id == (public_id or ""))
    )
    if session is None:
        raise SessionNotFound()
    return session


def connect_url(session: AuthorizationSession) -> str:
    """Our public URL for the session (what the QR codes encode)."""
    return f"{_public_base()}/connect/{session.link_token}"


def redirect_uri(session: AuthorizationSession) -> str:
    """Where WeChat sends the browser back, with our session id inside."""
    return f"{_public_base()}/wechat/authorized?{urlencode({'session': session.public_id})}"


def _public_base() -> str:
    return current_app.config["PUBLIC_BASE_URL"].rstrip("/")


@dataclass(frozen=True)
class AuthorizationLinks:
    """The two WeChat links for a session, built on one fresh pre_auth_code."""

    pc_url: str
    mobile_url: str
    expires_at: datetime


def authorization_links(session: AuthorizationSession) -> AuthorizationLinks:
    """PC and mobile links on a pre_auth_code no earlier view showed (WeChat burns a code when it
    is scanned, so a reused one could already be spent); TooManyViews past the link's limit."""
    _ensure_open(session)
    _count_view(session)
    with using(session.component_appid):
        code = _mint_pre_auth_code(session)
    config = current_app.config
    kwargs = {
        "auth_type": session.auth_type,
        "biz_appid": session.biz_appid,
        "category_id_list": session.requested_set_ids,
    }
    appid, value, back = session.component_appid, code.code, redirect_uri(session)
    return AuthorizationLinks(
        pc_url=links.pc_authorization_url(
            appid, value, back, base=config["WECHAT_MP_BASE"], **kwargs
        ),
        mobile_url=links.mobile_authorization_url(
            appid, value, back, base=config["WECHAT_OPEN_BASE"], **kwargs
        ),
        expires_at=code.expires_at,
    )


def _mark_expired(session: AuthorizationSession) -> None:
    session.status = SessionStatus.EXPIRED
    audit.record(
        "authorization_session.expired",
        merchant_id=session.merchant_id,
        target_type="authorization_session",
        target_id=session.id,
    )


def _ensure_open(session: AuthorizationSession) -> None:
    if session.status is SessionStatus.OPEN and session.expires_at <= clock.now():
        _mark_expired(session)
        db.session.commit()
    if session.status is not SessionStatus.OPEN:
        raise SessionClosed(status=session.status.value)


def _count_view(session: AuthorizationSession) -> None:
    """Each view mints a code from the platform's daily api_create_preauthcode quota: a public
    link may not spend it at will. Keyed by the link token's hash, never the token itself."""
    limits = parse_many(current_app.config["CONNECT_LINK_RATE_LIMIT"])
    key = session.link_token_hash
    blocked = [item for item in limits if not limiter.limiter.test(item, "connect_link", key)]
    if not blocked:
        for item in limits:
            limiter.limiter.hit(item, "connect_link", key)
        return
    resets = [limiter.limiter.get_window_stats(item, "connect_link", key)[0] for item in blocked]
    raise TooManyViews(retry_after=max(1, int(max(resets) - time.time()) + 1))


def _mint_pre_auth_code(session: AuthorizationSession) -> PreAuthCode:
    result = call_with_component_token(lambda token: wechat_client().create_preauthcode(token))
    code = PreAuthCode(
        session_id=session.id,
        code_hash=sha256_hex(result.pre_auth_code),
        code=result.pre_auth_code,
        created_at=clock.now(),
        expires_at=clock.now() + timedelta(seconds=result.expires_in),
    )
    db.session.add(code)
    db.session.commit()
    return code


def use_pre_auth_code(value: str | None) -> AuthorizationSession | None:
    """Mark a pushed pre_auth_code used; its session, or None when the code is not ours."""
    if not value:
        return None
    code = db.session.scalar(select(PreAuthCode).where(PreAuthCode.code_hash == sha256_hex(value)))
    if code is None:
        return None
    if code.used_at is None:
        code.used_at, code.code = clock.now(), None
    return code.session


def expire_sessions(now: datetime | None = None) -> int:
    """Mark open sessions past their expiry (and whose last code expired) as expired."""
    now = now or clock.now()
    expired = 0
    stale = select(AuthorizationSession).where(
        AuthorizationSession.status == SessionStatus.OPEN,
        AuthorizationSession.expires_at <= now,
        AuthorizationSession.exchanging_at.is_(None),
    )
    for session in db.session.scalars(stale):
        # A code minted just before expiry may still come back; wait for it to lapse too.
        if any(code.expires_at > now for code in session.pre_auth_codes):
            continue
        _mark_expired(session)
        expired += 1
    # An update that was never finished is no longer pending.
    db.session.execute(
        update(Grant)
        .where(
            Grant.pending_session_id.in_(
                select(AuthorizationSession.id).where(
                    AuthorizationSession.status != SessionStatus.OPEN
                )
            )
        )
        .values(pending_session_id=None)
        .execution_options(synchronize_session=False)
    )
    # Codes that can no longer be used need not be kept.
    db.session.execute(update(PreAuthCode).where(PreAuthCode.expires_at <= now).values(code=None))
    db.session.commit()
    return expired
