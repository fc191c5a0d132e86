"""Bulk actions on a selection of the staff accounts list: re-sync from WeChat, and ask the
merchants to re-authorize. Each account is handled on its own (one failure stops nothing) and
the run is audited with its counts."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.extensions import db
from app.models import Authorizer, User
from app.services import DomainError, audit
from app.services.console import actions, queries
from app.services.notify import notices
from app.wechat.errors import WeChatError

# One confirmed click may touch at most this many accounts: each re-sync is a WeChat call made
# while the staff member waits, and a broader change deserves a narrower filter.
BULK_LIMIT = 200
ACTIONS = ("resync", "notify")


class EmptySelection(DomainError):
    code = "empty_selection"


class SelectionTooLarge(DomainError):
    code = "selection_too_large"


@dataclass
class BulkOutcome:
    """How a bulk run went: the ids that worked and those that did not."""

    succeeded: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.succeeded) + len(self.failed)


def selection(f: queries.AccountFilter) -> list[int]:
    """The accounts a bulk action applies to: the filter's matches (narrowed to the ticked ids
    when there are any). Refuses an empty selection or one past BULK_LIMIT."""
    ids = queries.matching_ids(f.with_(page=1), limit=BULK_LIMIT + 1)
    if not ids:
        raise EmptySelection()
    if len(ids) > BULK_LIMIT:
        raise SelectionTooLarge(limit=BULK_LIMIT)
    return ids


def run(action: str, ids: list[int], *, actor: User) -> BulkOutcome:
    """Apply `action` ("resync" or "notify") to each account, then audit the run."""
    if action not in ACTIONS:
        raise ValueError(action)
    actor_id = actor.id
    outcome = BulkOutcome()
    for authorizer_id in ids:
        ok = (_resync_one if action == "resync" else _notify_one)(authorizer_id, actor)
        (outcome.succeeded if ok else outcome.failed).append(authorizer_id)
    actor = db.session.get(User, actor_id)
    audit.record(
        f"staff.bulk_{action}",
        actor=actor,
        target_type="authorizer",
        requested=len(ids),
        succeeded=len(outcome.succeeded),
        failed=len(outcome.failed),
        failed_ids=outcome.failed,
    )
    db.session.commit()
    return outcome


def _resync_one(authorizer_id: int, actor: User) -> bool:
    authorizer = db.session.get(Authorizer, authorizer_id)
    if authorizer is None:  # purged since the list was shown
        return False
    try:
        actions.resync_authorizer(authorizer, actor=actor)
    except (DomainError, WeChatError):
        db.session.rollback()
        return False
    return True


def _notify_one(authorizer_id: int, actor: User) -> bool:
    """Email the account's merchant admins the re-authorization notice (the same message the
    sweep sends when a refresh token is lost); False when nobody could be told."""
    authorizer = db.session.get(Authorizer, authorizer_id)
    if authorizer is None or authorizer.merchant_id is None:
        return False
    sent = notices.send_account_notice(
        notices.NEEDS_REAUTHORIZATION,
        merchant_id=authorizer.merchant_id,
        appid=authorizer.appid,
        name=authorizer.nick_name,
        account_id=authorizer.id,
    )
    if not sent:
        return False
    audit.record(
        "staff.reauthorization_requested",
        actor=actor,
        merchant_id=authorizer.merchant_id,
        target_type="authorizer",
        target_id=authorizer.id,
        recipients=sent,
    )
    db.session.commit()
    return True
