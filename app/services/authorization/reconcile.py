"""Reconciliation: compare WeChat's authorizer list with our grants; gaps go to staff, who may
adopt an unknown authorizer into a merchant."""

from __future__ import annotations

import dataclasses

from sqlalchemy import select

from app.current_platform import platform_detail
from app.extensions import db
from app.models import AttentionItem, Authorizer, Grant, GrantStatus, Merchant, User
from app.services import DomainError, audit
from app.services.authorization import authorizers, grants
from app.services.authorization.attention import (
    open_attention,
    resolution_words,
    resolve_attention,
)
from app.services.platform import platforms
from app.services.platform.credentials import call_with_component_token
from app.services.platform.platforms import current_appid, using, wechat_client
from app.wechat.errors import NotAuthorized, WeChatError
from app.wechat.release import is_release_test_account
from app.wechat.results import AuthorizerDetails, AuthorizerListItem


class CannotAdopt(DomainError):
    """The account cannot be adopted; `reason` says why (not_unknown_authorizer, already_held,
    not_authorized, wechat_unreachable, no_refresh_token)."""

    code = "cannot_adopt"


def reconcile_authorizers(*, page_size: int = 500) -> dict:
    """Page through the current platform's api_get_authorizer_list; unknown and missing
    authorizers become attention items (never silent deletions). Returns counts."""
    client = wechat_client()
    listed = call_with_component_token(
        lambda token: {
            i.authorizer_appid: i for i in client.iter_authorizers(token, page_size=page_size)
        }
    )
    ours = dict(
        db.session.execute(
            select(Authorizer.appid, Grant.status)
            .join(Grant, Grant.authorizer_id == Authorizer.id)
            .where(Authorizer.component_appid == current_appid())
        ).all()
    )
    # WeChat's release-check test accounts are authorized to every platform that goes live;
    # they belong to no merchant, so they are not gaps.
    unknown = sorted(a for a in set(listed) - set(ours) if not is_release_test_account(a))
    missing = sorted(a for a, s in ours.items() if s is GrantStatus.ACTIVE and a not in listed)
    for appid in unknown:
        open_attention(
            "unknown_authorizer", appid=appid,
            details={"auth_time": listed[appid].auth_time,
                     "has_refresh_token": bool(listed[appid].refresh_token)},
        )  # fmt: skip
    for appid in missing:
        authorizer = authorizers.find(appid)
        open_attention(
            "missing_authorizer", appid=appid, merchant_id=authorizer.merchant_id,
            details={"authorizer_id": authorizer.id},
        )  # fmt: skip
    counts = {"listed": len(listed), "ours": len(ours), "unknown": len(unknown),
              "missing": len(missing)}  # fmt: skip
    audit.record("authorizers.reconciled", **counts, **platform_detail())
    db.session.commit()
    return counts


def reconcile_job() -> str:
    """Job: reconcile every platform's authorizer list with our grants."""

    def reconcile() -> str:
        counts = reconcile_authorizers()
        return ", ".join(f"{k}={v}" for k, v in counts.items())

    return platforms.each(reconcile)


def adopt_authorizer(item: AttentionItem, merchant: Merchant, *, actor: User) -> Authorizer:
    """Adopt an unknown authorizer of the item's platform into `merchant`: the refresh token
    from api_get_authorizer_list, profile and sets from api_get_authorizer_info; audited, and
    the attention item resolved. Raises CannotAdopt (nothing changed)."""
    with using(item.component_appid):
        return _adopt(item, merchant, actor)


def _adopt(item: AttentionItem, merchant: Merchant, actor: User) -> Authorizer:
    appid = item.authorizer_appid
    if item.kind != "unknown_authorizer" or not appid or item.resolved_at is not None:
        raise CannotAdopt(reason="not_unknown_authorizer")
    if authorizers.find(appid) is not None:
        raise CannotAdopt(reason="already_held")
    listed, details = _read_from_wechat(appid)
    refresh_token = (listed.refresh_token if listed else "") or (
        details.authorization_info.authorizer_refresh_token
    )
    if listed is None or not refresh_token:
        raise CannotAdopt(reason="not_authorized" if listed is None else "no_refresh_token")
    info = dataclasses.replace(details.authorization_info, authorizer_refresh_token=refresh_token)
    authorizer = grants.store_adopted(info, details, merchant_id=merchant.id)
    audit.record(
        "staff.authorizer_adopted",
        actor=actor,
        merchant_id=merchant.id,
        target_type="authorizer",
        target_id=authorizer.id,
        attention_item_id=item.id,
        set_ids=list(info.permission_set_ids),
    )
    item.merchant_id = merchant.id
    resolve_attention(
        item, actor=actor, resolution=resolution_words("adopted", merchant_id=merchant.id)
    )
    return authorizer


def _read_from_wechat(appid: str) -> tuple[AuthorizerListItem | None, AuthorizerDetails]:
    client = wechat_client()
    try:
        details = call_with_component_token(lambda token: client.get_authorizer_info(token, appid))
        listed = call_with_component_token(
            lambda token: next(
                (i for i in client.iter_authorizers(token) if i.authorizer_appid == appid), None
            )
        )
    except NotAuthorized:
        raise CannotAdopt(reason="not_authorized") from None
    except (WeChatError, DomainError):
        raise CannotAdopt(reason="wechat_unreachable") from None
    return listed, details
