"""Completing authorization sessions, and the authorizers, grants and token custody they produce.

Either signal may arrive first: the browser redirect (`complete_from_redirect`) or the
`authorized`/`updateauthorized` push (`handle_grant_event`). Both go through `_complete`, which
claims the session with a guarded UPDATE so only one caller calls `api_query_auth`. Sessions are
opened in `authorization_sessions`, merchants read authorizers through `authorizers`, and
revocation and purge live in `purge`.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from sqlalchemy import func, or_, select, update

from app.extensions import db
from app.models import (
    AuthorizationSession,
    Authorizer,
    AuthorizerToken,
    Grant,
    GrantChange,
    GrantStatus,
    SessionStatus,
)
from app.services import DomainError, audit, clock
from app.services.authorization import authorizers, purge
from app.services.authorization.attention import open_attention
from app.services.authorization.authorizers import AuthorizerNotFound, on_this_platform
from app.services.authorization.purge import handle_unauthorized
from app.services.authorization.sessions import InvalidRequest, find_session, use_pre_auth_code
from app.services.notify import webhooks
from app.services.platform import intake
from app.services.platform.credentials import call_with_component_token
from app.services.platform.platforms import current_appid, using, wechat_client
from app.wechat.errors import CodeInvalid, NotAuthorized, WeChatError
from app.wechat.events import Authorized
from app.wechat.results import AuthorizationInfo, AuthorizerDetails, AuthorizerInfo

log = logging.getLogger(__name__)

# A claim older than this belongs to a crashed caller and may be taken over.
CLAIM_STALE_AFTER = timedelta(minutes=2)
# How long a push waits for a redirect's exchange (WeChat gives a push 5 s to be answered).
PUSH_WAIT_SECONDS = 2.0
# WeChat's auth_code is valid for an hour after consent; a kept redirect code is retried until then.
AUTH_CODE_TTL = timedelta(hours=1)


# --- completion from either signal ------------------------------------------------------------


def complete_from_redirect(
    public_id: str | None, auth_code: str | None, *, wait_seconds: float = 5.0
) -> AuthorizationSession:
    """The browser came back with auth_code: exchange it once (or find it done)."""
    session = find_session(public_id)
    if not auth_code:
        raise InvalidRequest("auth_code missing")
    with using(session.component_appid):
        session = _complete(session, auth_code, source="redirect")
    return _wait_until_settled(session, wait_seconds)


class ClaimedElsewhere(DomainError):
    """Another caller (the browser redirect) is exchanging this session's code right now; the
    push stays due, so the retry job finishes the work if that caller fails."""

    code = "claimed_elsewhere"
    retry_at_once = True  # the retry job's next run may find the work handed back


class GrantContended(DomainError):
    """Other signals kept writing this grant while WeChat's current grant was being re-read;
    the push stays due and the retry job applies WeChat's grant on a quieter run."""

    code = "grant_contended"


def handle_grant_event(event: Authorized) -> None:
    """Inbox handler for `authorized` and `updateauthorized` (idempotent); runs as the push's
    platform."""
    session = use_pre_auth_code(event.pre_auth_code)
    db.session.commit()
    if session is not None and session.component_appid != current_appid():
        session = None  # another platform's code: never settle that platform's session
    if session is None:
        _complete_without_session(event)
        purge.forget_dead_push(event.authorizer_appid, event.create_time)
        return

    def complete(session: AuthorizationSession) -> AuthorizationSession:
        return _complete(
            session,
            event.authorization_code,
            source="push",
            appid=event.authorizer_appid,
            event_time=event.create_time,
        )

    session = complete(session)
    if session.status is SessionStatus.OPEN:
        # The redirect holds the claim: wait a little; if it fails it hands the claim back.
        session = _wait_until_settled(session, PUSH_WAIT_SECONDS)
        if session.status is SessionStatus.OPEN and session.exchanging_at is None:
            session = complete(session)
    if session.status is SessionStatus.OPEN:
        raise ClaimedElsewhere()
    if session.status is SessionStatus.COMPLETED:
        _note_event_time(session.authorizer_appid, event.create_time)
    purge.forget_dead_push(event.authorizer_appid, event.create_time)


def _note_event_time(appid: str | None, event_time: int) -> None:
    """The push of an authorization another signal applied: remember when WeChat sent it."""
    grant = db.session.scalar(
        select(Grant)
        .join(Authorizer, Grant.authorizer_id == Authorizer.id)
        .where(on_this_platform(appid))
    )
    if grant is not None and (grant.last_event_time or 0) < event_time:
        grant.last_event_time = event_time
        db.session.flush()


def _is_stale(event_time: int | None, grant: Grant | None) -> bool:
    """An older push never undoes a newer state (DESIGN §4 "Ordering")."""
    if event_time is None or grant is None or grant.last_event_time is None:
        return False
    return event_time < grant.last_event_time


def _claim(session: AuthorizationSession) -> bool:
    now = clock.now()
    claimed = db.session.execute(
        update(AuthorizationSession)
        .where(
            AuthorizationSession.id == session.id,
            AuthorizationSession.status == SessionStatus.OPEN,
            or_(
                AuthorizationSession.exchanging_at.is_(None),
                AuthorizationSession.exchanging_at < now - CLAIM_STALE_AFTER,
            ),
        )
        .values(exchanging_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    db.session.refresh(session)
    return claimed == 1


def _release(
    session: AuthorizationSession, *, keep_code: str | None = None, appid: str | None = None
) -> None:
    """Hand the claim back. `keep_code`: the redirect's auth_code, kept (encrypted) for the retry
    job, because no push may ever carry it (an update consented without changes)."""
    db.session.rollback()
    db.session.execute(
        update(AuthorizationSession)
        .where(AuthorizationSession.id == session.id)
        .values(exchanging_at=None)
        .execution_options(synchronize_session=False)
    )
    if keep_code is not None and session.status is SessionStatus.OPEN:
        if session.retry_auth_code != keep_code:
            session.retry_auth_code = keep_code
            session.retry_code_expires_at = clock.now() + AUTH_CODE_TTL
        if appid and not session.authorizer_appid:
            session.authorizer_appid = appid  # the code is spent: a retry re-reads by appid
    db.session.commit()


def _complete(
    session: AuthorizationSession,
    auth_code: str,
    *,
    source: str,
    appid: str | None = None,
    event_time: int | None = None,
    kept_code: bool = False,
) -> AuthorizationSession:
    if session.status is not SessionStatus.OPEN or not _claim(session):
        return session  # done already, or another caller is exchanging right now
    keep = auth_code if source == "redirect" else None
    seen = _grant_high_water()
    try:
        info = _exchange(auth_code, appid)
    except CodeInvalid as error:
        _release(session)
        if kept_code:
            # The failed try may itself have spent it: the push, if WeChat sends one, completes
            # the session; a wrong guess here must not fail it first.
            session.retry_auth_code = session.retry_code_expires_at = None
            db.session.commit()
            return session
        _fail(session, "code_invalid", errcode=error.errcode)
        return session
    except Exception:
        _release(session, keep_code=keep)
        raise
    try:
        _apply(info, session=session, source=source, event_time=event_time, seen=seen)
    except Exception:
        # The code is spent: retry once (e.g. a concurrent insert of the same authorizer).
        db.session.rollback()
        try:
            _apply(info, session=session, source=source, event_time=event_time, seen=seen)
        except Exception:
            _release(session, keep_code=keep, appid=info.authorizer_appid)
            raise
    return session


def retry_redirect_exchanges(limit: int = 100) -> str:
    """Retry job: exchange the auth_codes that redirects kept after a transient failure, while
    they are valid. A session settled meanwhile (e.g. by the push) just forgets its code."""
    now = clock.now()
    ids = list(
        db.session.scalars(
            select(AuthorizationSession.id)
            .where(AuthorizationSession.retry_auth_code.is_not(None))
            .order_by(AuthorizationSession.id)
            .limit(limit)
        )
    )
    if not ids:
        return ""
    completed = 0
    for session_id in ids:
        db.session.rollback()
        session = db.session.get(AuthorizationSession, session_id)
        if session.status is not SessionStatus.OPEN or session.retry_code_expires_at <= now:
            session.retry_auth_code = session.retry_code_expires_at = None
            db.session.commit()
            continue
        try:
            with using(session.component_appid):
                session = _complete(
                    session,
                    session.retry_auth_code,
                    source="redirect",
                    appid=session.biz_appid or session.authorizer_appid,
                    kept_code=True,
                )
        except (WeChatError, DomainError) as error:
            log.warning("kept redirect code: exchange failed again: %s", type(error).__name__)
            continue
        completed += session.status is not SessionStatus.OPEN
    db.session.commit()
    return f"{len(ids)} kept redirect codes, {completed} settled"


def _grant_high_water() -> int:
    """The newest grant change so far: a change with a higher id was written after this point."""
    return db.session.scalar(select(func.max(GrantChange.id))) or 0


def _written_since(appid: str, seen: int) -> bool:
    """Lock the account's grant row (FOR UPDATE on PostgreSQL; SQLite serialises writers) and
    tell whether another signal wrote it after `seen` (see `_grant_high_water`)."""
    grant = db.session.scalar(
        select(Grant)
        .join(Authorizer, Grant.authorizer_id == Authorizer.id)
        .where(on_this_platform(appid))
        .with_for_update(of=Grant)
        .execution_options(populate_existing=True)
    )
    if grant is None:
        return False
    newest = db.session.scalar(
        select(func.max(GrantChange.id)).where(GrantChange.grant_id == grant.id)
    )
    return (newest or 0) > seen


def _apply_current(
    appid: str, *, session: AuthorizationSession | None, source: str, event_time: int | None
) -> Authorizer | None:
    """Another signal wrote this grant while our exchange ran, so our result may be older than
    what it wrote: apply WeChat's current grant instead (api_get_authorizer_info). WeChat
    unreachable: the error propagates, so a push stays due for the retry job."""
    client = wechat_client()
    for _ in range(3):
        db.session.rollback()
        seen = _grant_high_water()
        try:
            details = call_with_component_token(
                lambda token: client.get_authorizer_info(token, appid)
            )
        except NotAuthorized:
            # Revoked meanwhile: nothing to apply; the `unauthorized` push purges the account.
            db.session.rollback()
            if session is not None and session.status is SessionStatus.OPEN:
                _fail(session, "not_authorized")
            return None
        if _written_since(appid, seen):
            continue
        authorizer = _apply(
            details.authorization_info, session=session, source=source, details=details
        )
        if event_time is not None:
            _note_event_time(appid, event_time)
            db.session.commit()
        return authorizer
    db.session.rollback()
    raise GrantContended()


def _exchange(auth_code: str, appid: str | None) -> AuthorizationInfo:
    """api_query_auth; if the code was already consumed, re-read the grant by appid."""
    client = wechat_client()
    try:
        return call_with_component_token(lambda token: client.query_auth(token, auth_code))
    except CodeInvalid as invalid:
        if appid is None:
            raise
        # A crashed earlier exchange may have consumed it; WeChat still knows the grant. Only
        # WeChat's "not authorized" ends the work: an outage fails the push for a retry.
        try:
            details = call_with_component_token(
                lambda token: client.get_authorizer_info(token, appid)
            )
        except NotAuthorized:
            raise invalid from None
        return details.authorization_info


def _fetch_details(appid: str) -> AuthorizerDetails | None:
    """api_get_authorizer_info, or None when WeChat has nothing (61003) or fails."""
    client = wechat_client()
    try:
        return call_with_component_token(lambda token: client.get_authorizer_info(token, appid))
    except NotAuthorized:
        return None
    except (WeChatError, DomainError) as error:
        log.warning("api_get_authorizer_info failed: %s", type(error).__name__)
        return None


def _wait_until_settled(session: AuthorizationSession, wait_seconds: float) -> AuthorizationSession:
    deadline = time.monotonic() + wait_seconds
    while session.status is SessionStatus.OPEN and session.exchanging_at is not None:
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
        db.session.expire(session)
        db.session.refresh(session)
    return session


def _fail(session: AuthorizationSession, reason: str, **details) -> None:
    session.status, session.failure_reason = SessionStatus.FAILED, reason
    session.completed_at = clock.now()
    session.retry_auth_code = session.retry_code_expires_at = None
    audit.record(
        "authorization_session.failed",
        merchant_id=session.merchant_id,
        target_type="authorization_session",
        target_id=session.id,
        reason=reason,
        **details,
    )
    db.session.commit()


def _mismatch_reason(session: AuthorizationSession, authorizer: Authorizer | None, appid: str):
    if session.biz_appid and appid != session.biz_appid:
        return "wrong_account"
    if authorizer is not None and authorizer.merchant_id not in (None, session.merchant_id):
        return "bound_to_other_merchant"
    return None


def _apply(
    info: AuthorizationInfo,
    *,
    session: AuthorizationSession | None,
    source: str,
    details: AuthorizerDetails | None = None,
    event_time: int | None = None,
    seen: int | None = None,
) -> Authorizer | None:
    """Store authorizer, grant, history and tokens; settle the session. One transaction.

    `event_time` is the CreateTime of the push that carried the code (None for other sources).
    `seen` is the grant high-water mark taken before the exchange: if another signal wrote the
    grant since, this result is not written over it (see `_apply_current`)."""
    appid = info.authorizer_appid
    details = details or _fetch_details(appid)
    if seen is not None and _written_since(appid, seen):
        return _apply_current(appid, session=session, source=source, event_time=event_time)
    authorizer = authorizers.find(appid)
    reason = _mismatch_reason(session, authorizer, appid) if session else None
    if authorizer is None:
        owner = session.merchant_id if session and not reason else None
        authorizer = Authorizer(
            component_appid=current_appid(), appid=appid, merchant_id=owner, created_at=clock.now()
        )
        db.session.add(authorizer)
        db.session.flush()
    elif authorizer.merchant_id is None and session and not reason:
        authorizer.merchant_id = session.merchant_id
    if details is not None:
        update_profile(authorizer, details.authorizer_info)
    store_tokens(authorizer, info)
    change = _record_grant(authorizer, info, source=source, session=session, event_time=event_time)
    if session is not None:
        _settle(session, authorizer, info, source, reason)
    elif authorizer.merchant_id is None:
        open_attention("unsolicited_authorization", appid=appid, details={"source": source})
    db.session.commit()
    if change is not None:
        webhooks.notify_grant_change(authorizer, change)
    return authorizer


def _settle(session, authorizer, info, source, reason) -> None:
    session.authorizer_appid = info.authorizer_appid
    session.granted_set_ids = list(info.permission_set_ids)
    session.completed_at, session.completed_via = clock.now(), source
    session.exchanging_at = None  # settled: nobody holds the claim any more
    session.retry_auth_code = session.retry_code_expires_at = None
    session.status = SessionStatus.MISMATCH if reason else SessionStatus.COMPLETED
    session.failure_reason = reason
    if reason:
        open_attention(
            "session_mismatch",
            appid=info.authorizer_appid,
            merchant_id=session.merchant_id,
            session_id=session.id,
            details={"reason": reason, "owner_merchant_id": authorizer.merchant_id},
        )
    audit.record(
        "authorization_session.mismatch" if reason else "authorization_session.completed",
        merchant_id=session.merchant_id,
        target_type="authorization_session",
        target_id=session.id,
        authorizer_id=authorizer.id,
        via=source,
        reason=reason,
        granted_set_ids=session.granted_set_ids,
    )


def _complete_without_session(event: Authorized) -> None:
    """A push whose PreAuthCode is not ours (e.g. an update in WeChat's security assistant)."""
    authorizer = authorizers.find(event.authorizer_appid)
    if authorizer is not None and _is_stale(event.create_time, authorizer.grant):
        _record_stale(authorizer, event.info_type, event.create_time)
        db.session.commit()
        return
    if authorizer is None and purge.revoked_after(event.authorizer_appid, event.create_time):
        log.info("push older than the revocation that purged its account; nothing to do")
        return
    seen = _grant_high_water()
    try:
        info = _exchange(event.authorization_code, event.authorizer_appid)
    except CodeInvalid:
        log.info("push for a grant that is gone or already exchanged; nothing to do")
        return
    _apply(info, session=None, source="push", event_time=event.create_time, seen=seen)


def _record_stale(authorizer: Authorizer, info_type: str, event_time: int) -> None:
    audit.record(
        "grant.stale_push_ignored",
        merchant_id=authorizer.merchant_id,
        target_type="authorizer",
        target_id=authorizer.id,
        info_type=info_type,
        event_time=event_time,
        newest_event_time=authorizer.grant.last_event_time if authorizer.grant else None,
    )


# --- authorizers, grants, tokens ---------------------------------------------------------------


def update_profile(authorizer: Authorizer, info: AuthorizerInfo) -> None:
    """Copy the account profile from api_get_authorizer_info."""
    authorizer.account_type = info.account_type
    authorizer.nick_name = info.nick_name or None
    authorizer.head_img = info.head_img or None
    authorizer.principal_name = info.principal_name or None
    authorizer.user_name = info.user_name or None
    authorizer.alias = info.alias or None
    authorizer.service_type_id = info.service_type_id
    authorizer.verify_type_id = info.verify_type_id
    authorizer.qrcode_url = info.qrcode_url or None
    authorizer.account_status = info.account_status
    authorizer.profile_fetched_at = clock.now()


def store_tokens(authorizer: Authorizer, info: AuthorizationInfo) -> AuthorizerToken:
    """Keep the refresh token; replace any cached access token (re-authorization)."""
    now = clock.now()
    custody = authorizer.token
    if custody is None:
        custody = AuthorizerToken(authorizer=authorizer, consecutive_failures=0)
        db.session.add(custody)
    if info.authorizer_refresh_token and info.authorizer_refresh_token != custody.refresh_token:
        custody.refresh_token = info.authorizer_refresh_token
        custody.refresh_token_updated_at = now
    # An access token minted before a re-authorization must never be served again.
    custody.access_token = info.authorizer_access_token
    custody.access_expires_at = (
        now + timedelta(seconds=info.expires_in or 7200) if info.authorizer_access_token else None
    )
    if info.authorizer_access_token:
        custody.last_refresh_at = now
    custody.consecutive_failures, custody.last_error_code, custody.next_attempt_at = 0, None, None
    return custody


def _record_grant(
    authorizer: Authorizer,
    info: AuthorizationInfo,
    *,
    source: str,
    session=None,
    event_time: int | None = None,
) -> GrantChange | None:
    now = clock.now()
    new = list(info.permission_set_ids)
    func_info = [{"id": s.id, "confirm_info": s.confirm_info} for s in info.func_info]
    grant = authorizer.grant
    if _is_stale(event_time, grant):
        # A newer push already set the list: keep it (the tokens stored above are current).
        if session is not None and grant.pending_session_id == session.id:
            grant.pending_session_id = None
        _record_stale(authorizer, source, event_time)
        return None
    if grant is not None and event_time is not None:
        grant.last_event_time = event_time
    if grant is None:
        grant = Grant(authorizer=authorizer, set_ids=[], authorized_at=now)
        grant.last_event_time = event_time
        db.session.add(grant)
        kind, old = "authorized", []
    else:
        old = list(grant.set_ids or [])
        kind = "updated" if sorted(old) != new else "confirmed"
        if grant.status is not GrantStatus.ACTIVE:
            kind = "reauthorized"
            grant.authorized_at = now
    grant.status, grant.set_ids, grant.func_info = GrantStatus.ACTIVE, new, func_info
    grant.updated_at = grant.confirmed_at = now
    if session is not None and grant.pending_session_id == session.id:
        grant.pending_session_id = None
    change = GrantChange(
        grant=grant,
        at=now,
        kind=kind,
        set_ids=new,
        added=sorted(set(new) - set(old)),
        removed=sorted(set(old) - set(new)),
        source=source,
        session_id=session.id if session else None,
    )
    db.session.add(change)
    db.session.flush()
    audit.record(
        f"grant.{kind}",
        merchant_id=authorizer.merchant_id,
        target_type="authorizer",
        target_id=authorizer.id,
        set_ids=new,
        added=change.added,
        removed=change.removed,
        source=source,
    )
    return change


def mark_needs_reauthorization(authorizer: Authorizer, *, reason: str, source: str) -> None:
    """WeChat has no usable refresh token for this account: the merchant must re-authorize."""
    grant = authorizer.grant
    if grant is None or grant.status is GrantStatus.NEEDS_REAUTHORIZATION:
        return
    grant.status, grant.updated_at = GrantStatus.NEEDS_REAUTHORIZATION, clock.now()
    change = GrantChange(
        grant=grant, at=clock.now(), kind="needs_reauthorization", set_ids=grant.set_ids,
        added=[], removed=[], source=source,
    )  # fmt: skip
    db.session.add(change)
    open_attention(
        "needs_reauthorization",
        appid=authorizer.appid,
        merchant_id=authorizer.merchant_id,
        details={"reason": reason},
    )
    audit.record(
        "grant.needs_reauthorization",
        merchant_id=authorizer.merchant_id,
        target_type="authorizer",
        target_id=authorizer.id,
        reason=reason,
    )
    db.session.flush()
    webhooks.notify_grant_change(authorizer, change)


def store_adopted(
    info: AuthorizationInfo, details: AuthorizerDetails, *, merchant_id: int
) -> Authorizer:
    """Store an account staff adopt into a merchant (on the current platform): profile, grant
    and refresh token."""
    authorizer = Authorizer(
        component_appid=current_appid(),
        appid=info.authorizer_appid,
        merchant_id=merchant_id,
        created_at=clock.now(),
    )
    db.session.add(authorizer)
    db.session.flush()
    return _apply(info, session=None, source="staff", details=details)


def refresh_authorizer(authorizer: Authorizer, *, source: str = "staff") -> Authorizer:
    """Re-read the account and its grant from WeChat (api_get_authorizer_info), as its platform."""
    with using(authorizer.component_appid):
        details = _fetch_details(authorizer.appid)
        if details is None:
            raise AuthorizerNotFound("WeChat did not return this authorizer")
        return _apply(details.authorization_info, session=None, source=source, details=details)


# The intake dispatcher routes these pushes here (importing this module registers them).
intake.register_handler("authorized", handle_grant_event)
intake.register_handler("updateauthorized", handle_grant_event)
intake.register_handler(
    "unauthorized", handle_unauthorized, on_give_up=purge.revocation_unconfirmed
)
intake.register_retry(retry_redirect_exchanges)
