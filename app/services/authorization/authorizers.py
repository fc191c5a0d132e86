"""Reads of authorizers: the current platform's account by appid, a merchant's list, a
tenant-checked lookup, the grant badge.

An authorization is (platform, account): one account may authorize several of the provider's
platforms, each its own Authorizer row. Lookups by appid are on the current platform
(`app.current_platform`); purge keys and tombstones are per platform too (`account_ref`).
"""

from __future__ import annotations

from sqlalchemy import and_, select

from app.current_platform import current_appid
from app.extensions import db
from app.models import Authorizer, GrantStatus
from app.services import DomainError
from app.services.platform import platforms


class AuthorizerNotFound(DomainError):
    code = "authorizer_not_found"


def on_this_platform(appid: str | None):
    """SQL condition: the current platform's account `appid`."""
    return and_(Authorizer.component_appid == current_appid(), Authorizer.appid == (appid or ""))


def find(appid: str | None) -> Authorizer | None:
    """The current platform's account `appid`, if held."""
    return db.session.scalar(select(Authorizer).where(on_this_platform(appid)))


def platforms_holding(appid: str) -> list[str]:
    """The component appids on which the account `appid` is held (sorted)."""
    query = select(Authorizer.component_appid).where(Authorizer.appid == appid)
    return sorted(db.session.scalars(query))


def merchant_authorizers(merchant_id: int) -> list[Authorizer]:
    """The merchant's authorizers, newest first."""
    query = (
        select(Authorizer)
        .where(Authorizer.merchant_id == merchant_id)
        .order_by(Authorizer.created_at.desc(), Authorizer.id.desc())
    )
    return list(db.session.scalars(query))


def get_merchant_authorizer(merchant_id: int, authorizer_id: int) -> Authorizer:
    """One of the merchant's authorizers, else AuthorizerNotFound (views answer 404)."""
    authorizer = db.session.get(Authorizer, authorizer_id)
    if authorizer is None or authorizer.merchant_id != merchant_id:
        raise AuthorizerNotFound()
    return authorizer


def required_set_ids(account_type: str | None, component_appid: str | None = None) -> list[int]:
    """The sets the platform (default: the current one) needs for this account type (its own
    list, else REQUIRED_PERMISSION_SETS_<TYPE>: see `platforms.required_set_ids`)."""
    return platforms.required_set_ids(account_type, component_appid)


def missing_required(account_type: str | None, set_ids, component_appid: str | None = None):
    """Required sets of the platform that `set_ids` lacks: an active grant with any is only
    partial."""
    granted = set(set_ids or [])
    return [i for i in required_set_ids(account_type, component_appid) if i not in granted]


def grant_badge(authorizer: Authorizer) -> str:
    """The UI badge: active, partial, update_pending, needs_reauthorization or revoked."""
    grant = authorizer.grant
    if grant is None:
        return GrantStatus.REVOKED.value
    if grant.status is GrantStatus.ACTIVE and grant.pending_session_id is not None:
        return "update_pending"
    if grant.status is GrantStatus.ACTIVE and missing_required(
        authorizer.account_type, grant.set_ids, authorizer.component_appid
    ):
        return "partial"
    return grant.status.value
