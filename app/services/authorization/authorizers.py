"""Reads of a merchant's authorizers: the list, a tenant-checked lookup, the grant badge."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import Authorizer, GrantStatus
from app.services import DomainError


class AuthorizerNotFound(DomainError):
    code = "authorizer_not_found"


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


def grant_badge(authorizer: Authorizer) -> str:
    """The merchant UI badge: active, update_pending, needs_reauthorization or revoked."""
    grant = authorizer.grant
    if grant is None:
        return GrantStatus.REVOKED.value
    if grant.status is GrantStatus.ACTIVE and grant.pending_session_id is not None:
        return "update_pending"
    return grant.status.value
