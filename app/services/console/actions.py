"""Staff console actions on one account: each calls the owning service and leaves an audit entry.

The grants, tokens and intake services own the writes; this module adds what staff need on top
(who asked, and an audit entry for every action) and the two writes no other service offers:
assigning an unassigned or conflicting account to a merchant, and dismissing attention items.
"""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import AttentionItem, Authorizer, InboxEvent, Merchant, User
from app.services import DomainError, audit
from app.services.authorization import authorizers, grants, purge, reconcile
from app.services.authorization.attention import resolution_words, resolve_attention
from app.services.custody import sweep
from app.services.platform import intake


class ActionFailed(DomainError):
    code = "action_failed"


class NotReplayable(DomainError):
    code = "not_replayable"


def _record(action: str, authorizer: Authorizer, actor: User, **details) -> None:
    audit.record(
        action,
        actor=actor,
        merchant_id=authorizer.merchant_id,
        target_type="authorizer",
        target_id=authorizer.id,
        **details,
    )
    db.session.commit()


def refresh_token_now(authorizer: Authorizer, *, actor: User) -> str:
    """Refresh the account's access token at once (under the same lease as the sweep)."""
    owner = sweep.new_owner()
    if authorizer.token is None or not authorizer.token.refresh_token:
        outcome = "no_refresh_token"
    elif not sweep.claim_one(authorizer.id, owner):
        outcome = "lease_busy"
    else:
        outcome = sweep.refresh_one(authorizer.id, owner)
    authorizer = db.session.get(Authorizer, authorizer.id)
    _record("staff.token_refreshed", authorizer, actor, outcome=outcome)
    if outcome not in ("refreshed", "recovered"):
        raise ActionFailed(outcome=outcome)
    return outcome


def resync_authorizer(authorizer: Authorizer, *, actor: User) -> None:
    """Re-read profile and grant from WeChat (api_get_authorizer_info)."""
    authorizer_id = authorizer.id
    try:
        grants.refresh_authorizer(authorizer, source="staff")
    except authorizers.AuthorizerNotFound:
        db.session.rollback()
        _record("staff.authorizer_resynced", db.session.get(Authorizer, authorizer_id), actor,
                outcome="not_found")  # fmt: skip
        raise ActionFailed(outcome="not_found") from None
    _record("staff.authorizer_resynced", db.session.get(Authorizer, authorizer_id), actor,
            outcome="ok")  # fmt: skip


def replay_event(event: InboxEvent, *, actor: User) -> str:
    """Run a failed (or stuck) event's handler again; returns the new outcome."""
    if event.outcome not in ("failed", "pending"):
        raise NotReplayable(outcome=event.outcome)
    event_id, appid, info_type = event.id, event.authorizer_appid, event.info_type
    component_appid = event.component_appid
    outcome = intake.process_event(event_id) or "busy"
    merchant_id = None
    if appid:
        merchant_id = db.session.scalar(
            select(Authorizer.merchant_id).where(
                Authorizer.component_appid == component_appid, Authorizer.appid == appid
            )
        )
    audit.record(
        "staff.event_replayed",
        actor=actor,
        merchant_id=merchant_id,
        target_type="inbox_event",
        target_id=event_id,
        info_type=info_type,
        outcome=outcome,
    )
    db.session.commit()
    return outcome


# Only an ownership question is settled by choosing a merchant: a session that ended on another
# merchant's (or the wrong) account, or an authorization that arrived outside any session.
# A lost refresh token, a gap at WeChat or an unconfirmed revocation is not fixed by moving it.
ASSIGNABLE_KINDS = frozenset({"session_mismatch", "unsolicited_authorization"})
# An account WeChat lists but Grantdesk does not hold is adopted (tokens fetched), not assigned.
ADOPTABLE_KINDS = frozenset({"unknown_authorizer"})


class NotAssignable(ActionFailed):
    code = "not_assignable"


def resolutions(item: AttentionItem, authorizer: Authorizer | None) -> set[str]:
    """How staff may resolve this item: a subset of {"assign", "adopt", "dismiss"}."""
    offered = {"dismiss"}
    if item.kind in ASSIGNABLE_KINDS and authorizer is not None:
        offered.add("assign")
    if item.kind in ADOPTABLE_KINDS and authorizer is None:
        offered.add("adopt")
    return offered


def assign_authorizer(item: AttentionItem, merchant: Merchant, *, actor: User) -> Authorizer:
    """Resolve a mismatch or conflict by giving the account to `merchant`."""
    if item.kind not in ASSIGNABLE_KINDS:
        raise NotAssignable(outcome="not_assignable", kind=item.kind)
    authorizer = authorizer_for_item(item)
    if authorizer is None:
        raise ActionFailed(outcome="account_gone")
    previous = authorizer.merchant_id
    authorizer.merchant_id = merchant.id
    audit.record(
        "staff.authorizer_assigned",
        actor=actor,
        merchant_id=merchant.id,
        target_type="authorizer",
        target_id=authorizer.id,
        previous_merchant_id=previous,
        attention_item_id=item.id,
    )
    item.merchant_id = item.merchant_id or merchant.id
    resolution = resolution_words("assigned", merchant_id=merchant.id)
    resolve_attention(item, actor=actor, resolution=resolution)
    return authorizer


def adopt_authorizer(item: AttentionItem, merchant: Merchant, *, actor: User) -> Authorizer:
    """Adopt an unknown authorizer WeChat lists into `merchant` (reconcile owns the rules)."""
    return reconcile.adopt_authorizer(item, merchant, actor=actor)


def purge_account(authorizer: Authorizer, *, actor: User) -> None:
    """Purge an account whose revocation WeChat confirms (the purge service owns the rules)."""
    purge.staff_purge(authorizer, actor=actor)


def dismiss_attention(item: AttentionItem, *, actor: User, note: str = "") -> None:
    """Resolve an attention item without changing anything else."""
    resolve_attention(item, actor=actor, resolution=resolution_words("dismissed", note=note))


def authorizer_for_item(item: AttentionItem) -> Authorizer | None:
    """The account an attention item is about (on the item's platform), if it still exists."""
    if not item.authorizer_appid:
        return None
    return db.session.scalar(
        select(Authorizer).where(
            Authorizer.component_appid == item.component_appid,
            Authorizer.appid == item.authorizer_appid,
        )
    )
