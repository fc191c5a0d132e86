"""Revocation and purge: end a grant and delete everything about the account, in one transaction.

What goes: the authorizer row with its grant, history and token custody; pre_auth_codes (their
hashes stay) and the appid in sessions; the inbox payloads of pushes about the account; its
attention items and webhook log; its relayed messages and their deliveries, pending or not.
What stays: a tombstone in the audit log (appid hash, dates, who, why).
"""

from __future__ import annotations

from sqlalchemy import delete, func, or_, select, update

from app.current_platform import account_ref, platform_detail
from app.extensions import db
from app.models import (
    AttentionItem,
    AuditEntry,
    AuthorizationSession,
    Authorizer,
    GrantStatus,
    InboxEvent,
    PreAuthCode,
    User,
    WebhookDelivery,
)
from app.services import DomainError, audit, clock
from app.services.authorization import authorizers
from app.services.authorization.attention import open_attention
from app.services.notify import webhooks
from app.services.platform.credentials import call_with_component_token
from app.services.platform.platforms import current_appid, using, wechat_client
from app.services.relay import retention as relay_retention
from app.wechat.errors import NotAuthorized, WeChatError
from app.wechat.events import Unauthorized


class StillAuthorized(DomainError):
    code = "still_authorized"


class CannotVerifyRevocation(DomainError):
    """WeChat could not tell us whether the account is still authorized; delete nothing."""

    code = "cannot_verify_revocation"


class ChangedWhileConfirming(DomainError):
    """The grant changed while WeChat confirmed the revocation; the push stays due."""

    code = "changed_while_confirming"


def handle_unauthorized(event: Unauthorized) -> None:
    """Inbox handler for `unauthorized`: purge the account once WeChat confirms the revocation.

    A push older than the grant's newest applied push is stale (the account was authorized
    again since) and changes nothing. Otherwise WeChat is asked first: if it still lists the
    grant, nothing is purged; if it cannot answer, CannotVerifyRevocation leaves the push due
    for the retry job (an attention item opens when its retries run out)."""
    appid = event.authorizer_appid
    authorizer = authorizers.find(appid)
    grant = authorizer.grant if authorizer is not None else None
    if grant is not None and grant.last_event_time and event.create_time < grant.last_event_time:
        _record_kept(authorizer, appid, "stale_push", event.create_time)
        return
    asked_at = clock.now()
    if wechat_still_authorizes(appid):
        _record_kept(authorizer, appid, "still_authorized", event.create_time)
        return
    db.session.commit()  # end the read: see what others stored while WeChat answered
    authorizer = authorizers.find(appid)
    if authorizer is not None and authorizer.grant is not None:
        if authorizer.grant.updated_at >= asked_at:
            # The grant changed while WeChat answered (a re-authorization?): ask again later.
            raise ChangedWhileConfirming()
    purge_authorizer(appid, reason="unauthorized", up_to_event_time=event.create_time)


def revocation_unconfirmed(event: Unauthorized) -> None:
    """The retries of an `unauthorized` push ran out while WeChat could not confirm: staff decide
    (the account page offers a purge that asks WeChat again)."""
    authorizer = authorizers.find(event.authorizer_appid)
    if authorizer is None:
        return
    open_attention(
        "revocation_unconfirmed",
        appid=authorizer.appid,
        merchant_id=authorizer.merchant_id,
        details={"authorizer_id": authorizer.id, "event_time": event.create_time},
    )
    db.session.commit()


def _record_kept(authorizer: Authorizer | None, appid: str, reason: str, event_time: int) -> None:
    audit.record(
        "authorizer.purge_declined",
        merchant_id=authorizer.merchant_id if authorizer else None,
        target_type="authorizer",
        target_id=authorizer.id if authorizer else None,
        appid_hash=account_ref(appid),
        reason=reason,
        event_time=event_time,
    )
    db.session.flush()


def request_deletion(authorizer: Authorizer, *, actor: User | None = None) -> None:
    """A merchant asks us to delete an account's data (after revoking it on WeChat)."""
    with using(authorizer.component_appid):
        if authorizer.grant is not None and authorizer.grant.status is not GrantStatus.REVOKED:
            if wechat_still_authorizes(authorizer.appid):
                raise StillAuthorized()
        purge_authorizer(authorizer.appid, reason="deletion_requested", actor=actor)


def staff_purge(authorizer: Authorizer, *, actor: User) -> None:
    """Staff purge an account whose `unauthorized` push was lost for good: only once WeChat
    confirms the revocation (StillAuthorized or CannotVerifyRevocation otherwise), then
    exactly as the push would."""
    appid, authorizer_id, merchant_id = authorizer.appid, authorizer.id, authorizer.merchant_id
    with using(authorizer.component_appid):
        try:
            still = wechat_still_authorizes(appid)
        except CannotVerifyRevocation:
            _record_refusal(actor, authorizer_id, merchant_id, "wechat_unreachable")
            raise
        if still:
            _record_refusal(actor, authorizer_id, merchant_id, "still_authorized")
            raise StillAuthorized()
        purge_authorizer(appid, reason="staff_purge", actor=actor)


def _record_refusal(actor: User, authorizer_id: int, merchant_id: int | None, reason: str) -> None:
    db.session.rollback()
    audit.record(
        "staff.purge_refused",
        actor=actor,
        merchant_id=merchant_id,
        target_type="authorizer",
        target_id=authorizer_id,
        reason=reason,
    )
    db.session.commit()


def deletion_readiness(authorizer: Authorizer) -> str:
    """Before showing a delete button: "ready", "still_authorized" or "cannot_verify"."""
    if authorizer.grant is None or authorizer.grant.status is GrantStatus.REVOKED:
        return "ready"
    try:
        with using(authorizer.component_appid):
            still = wechat_still_authorizes(authorizer.appid)
    except CannotVerifyRevocation:
        return "cannot_verify"
    return "still_authorized" if still else "ready"


def wechat_still_authorizes(appid: str) -> bool:
    """Ask WeChat; only its explicit "not authorized" (61003) is a no. An outage never purges."""
    client = wechat_client()
    try:
        call_with_component_token(lambda token: client.get_authorizer_info(token, appid))
    except NotAuthorized:
        return False
    except (WeChatError, DomainError) as error:
        raise CannotVerifyRevocation() from error
    return True


def purge_authorizer(
    appid: str, *, reason: str, actor: User | None = None, up_to_event_time: int | None = None
) -> None:
    """Delete tokens, codes, profile and event payloads of the current platform's account;
    keep a tombstone (an authorization of the same account to another platform stays).

    With `up_to_event_time` (the revoking push's CreateTime), pushes WeChat sent later (a
    re-authorization racing the purge) are left to be processed."""
    ref = account_ref(appid)
    authorizer = authorizers.find(appid)
    tombstone = {"appid_hash": ref, "reason": reason, "purged_at": clock.now().isoformat()}
    tombstone.update(platform_detail())
    if up_to_event_time is not None:
        tombstone["event_time"] = up_to_event_time  # the revoking push's CreateTime
    merchant_id = None
    if authorizer is not None:
        merchant_id = authorizer.merchant_id
        if authorizer.grant is not None:
            tombstone["authorized_at"] = authorizer.grant.authorized_at.isoformat()
            tombstone["set_ids"] = list(authorizer.grant.set_ids)
        tombstone["authorizer_id"] = authorizer.id
        tombstone["account_type"] = authorizer.account_type  # the merchant's receipt (no profile)
        relay_retention.purge_account(authorizer.id)  # its users' messages, pending or not
        db.session.delete(authorizer)  # cascades: grant, history, token custody
    _scrub_sessions(appid)
    _scrub_inbox(appid, up_to_event_time)
    db.session.execute(delete(AttentionItem).where(AttentionItem.appid_hash == ref))
    db.session.execute(delete(WebhookDelivery).where(WebhookDelivery.appid_hash == ref))
    audit.record(
        "authorizer.purged",
        actor=actor,
        merchant_id=merchant_id,
        target_type="authorizer",
        target_id=tombstone.get("authorizer_id"),
        **tombstone,
    )
    db.session.flush()
    if authorizer is not None:
        webhooks.notify_revoked(appid, merchant_id=merchant_id, reason=reason)
    db.session.commit()


def revoked_after(appid: str, event_time: int) -> bool:
    """Did a revocation newer than `event_time` purge this account? Then a grant push sent at
    `event_time` carries a code the revocation killed (no need to ask WeChat)."""
    newest = db.session.scalar(
        select(func.max(AuditEntry.details["event_time"].as_integer())).where(
            AuditEntry.action == "authorizer.purged",
            AuditEntry.details["appid_hash"].as_string() == account_ref(appid),
        )
    )
    return newest is not None and event_time < newest


def forget_dead_push(appid: str | None, event_time: int) -> None:
    """A grant push that left us holding nothing (its code died with a revocation, e.g. it was
    overtaken by the `unauthorized` that purged the account) keeps no payload either. Newer
    pushes keep theirs: a re-authorization may still be on its way."""
    if not appid or authorizers.find(appid) is not None:
        return
    _scrub_inbox(appid, event_time)
    db.session.flush()


def _scrub_sessions(appid: str) -> None:
    sessions = select(AuthorizationSession.id).where(
        AuthorizationSession.component_appid == current_appid(),
        or_(
            AuthorizationSession.authorizer_appid == appid, AuthorizationSession.biz_appid == appid
        ),
    )
    ids = list(db.session.scalars(sessions))
    if not ids:
        return
    # The codes go, their hashes stay (as for expired ones): a late push naming one still finds
    # its settled session instead of spending api_query_auth on a code the redirect exchanged.
    db.session.execute(
        update(PreAuthCode)
        .where(PreAuthCode.session_id.in_(ids))
        .values(code=None)
        .execution_options(synchronize_session=False)
    )
    db.session.execute(
        update(AuthorizationSession)
        .where(AuthorizationSession.id.in_(ids))
        .values(authorizer_appid=None, biz_appid=None)
        .execution_options(synchronize_session=False)
    )


def _scrub_inbox(appid: str, up_to_event_time: int | None) -> None:
    query = select(InboxEvent).where(
        InboxEvent.component_appid == current_appid(), InboxEvent.authorizer_appid == appid
    )
    if up_to_event_time is not None:
        query = query.where(InboxEvent.create_time <= up_to_event_time)
    for row in db.session.scalars(query):
        # Keep the row (its hashed dedupe key still recognises copies), drop its payload.
        row.authorizer_appid = None
        row.fields = {"purged": True}
        row.raw_xml = ""
        row.error = None
        if row.outcome in ("pending", "failed"):
            # Older pushes about a revoked account have nothing left to do.
            row.outcome, row.next_attempt_at, row.processed_at = "ignored", None, clock.now()
