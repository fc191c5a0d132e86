"""Revocation and purge: end a grant and delete everything about the account, in one transaction.

What goes: the authorizer row with its grant, history and token custody; pre_auth_codes and the
appid in sessions; the inbox payloads of pushes about the account; its attention items and
webhook log. What stays: a tombstone in the audit log (appid hash, dates, who, why).
"""

from __future__ import annotations

from sqlalchemy import delete, or_, select, update

from app.extensions import db, wechat_client
from app.models import (
    AttentionItem,
    AuthorizationSession,
    Authorizer,
    GrantStatus,
    InboxEvent,
    PreAuthCode,
    User,
    WebhookDelivery,
)
from app.models.grants import appid_ref, sha256_hex
from app.services import DomainError, audit, clock
from app.services.notify import webhooks
from app.services.platform.credentials import call_with_component_token
from app.wechat.errors import NotAuthorized, WeChatError
from app.wechat.events import Unauthorized


class StillAuthorized(DomainError):
    code = "still_authorized"


class CannotVerifyRevocation(DomainError):
    """WeChat could not tell us whether the account is still authorized; delete nothing."""

    code = "cannot_verify_revocation"


def handle_unauthorized(event: Unauthorized) -> None:
    """Inbox handler for `unauthorized`: end the grant and purge the account's data at once."""
    purge_authorizer(event.authorizer_appid, reason="unauthorized", keep_inbox_id=None)


def request_deletion(authorizer: Authorizer, *, actor: User | None = None) -> None:
    """A merchant asks us to delete an account's data (after revoking it on WeChat)."""
    if authorizer.grant is not None and authorizer.grant.status is not GrantStatus.REVOKED:
        if wechat_still_authorizes(authorizer.appid):
            raise StillAuthorized()
    purge_authorizer(authorizer.appid, reason="deletion_requested", actor=actor)


def deletion_readiness(authorizer: Authorizer) -> str:
    """Before showing a delete button: "ready", "still_authorized" or "cannot_verify"."""
    if authorizer.grant is None or authorizer.grant.status is GrantStatus.REVOKED:
        return "ready"
    try:
        return "still_authorized" if wechat_still_authorizes(authorizer.appid) else "ready"
    except CannotVerifyRevocation:
        return "cannot_verify"


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
    appid: str, *, reason: str, actor: User | None = None, keep_inbox_id: int | None = None
) -> None:
    """Delete tokens, codes, profile and event payloads of an account; keep a tombstone."""
    ref = appid_ref(appid)
    authorizer = db.session.scalar(select(Authorizer).where(Authorizer.appid == appid))
    tombstone = {"appid_hash": ref, "reason": reason, "purged_at": clock.now().isoformat()}
    merchant_id = None
    if authorizer is not None:
        merchant_id = authorizer.merchant_id
        if authorizer.grant is not None:
            tombstone["authorized_at"] = authorizer.grant.authorized_at.isoformat()
            tombstone["set_ids"] = list(authorizer.grant.set_ids)
        tombstone["authorizer_id"] = authorizer.id
        tombstone["account_type"] = authorizer.account_type  # the merchant's receipt (no profile)
        db.session.delete(authorizer)  # cascades: grant, history, token custody
    _scrub_sessions(appid)
    _scrub_inbox(appid)
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


def _scrub_sessions(appid: str) -> None:
    sessions = select(AuthorizationSession.id).where(
        or_(AuthorizationSession.authorizer_appid == appid, AuthorizationSession.biz_appid == appid)
    )
    ids = list(db.session.scalars(sessions))
    if not ids:
        return
    db.session.execute(delete(PreAuthCode).where(PreAuthCode.session_id.in_(ids)))
    db.session.execute(
        update(AuthorizationSession)
        .where(AuthorizationSession.id.in_(ids))
        .values(authorizer_appid=None, biz_appid=None)
        .execution_options(synchronize_session=False)
    )


def _scrub_inbox(appid: str) -> None:
    rows = db.session.scalars(select(InboxEvent).where(InboxEvent.authorizer_appid == appid))
    for row in rows:
        # Keep the row (its dedupe still works through the hashed key), drop its payload.
        row.authorizer_appid = None
        row.fields = {"purged": True}
        row.raw_xml = ""
        row.dedupe_key = "purged:" + sha256_hex(row.dedupe_key)[:64]
        row.error = None
