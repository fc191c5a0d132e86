"""Reconciliation: compare WeChat's authorizer list with our grants; gaps go to staff."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db, wechat_client
from app.models import Authorizer, Grant, GrantStatus
from app.services import audit
from app.services.authorization.attention import open_attention
from app.services.platform.credentials import call_with_component_token
from app.wechat.release import is_release_test_account


def reconcile_authorizers(*, page_size: int = 500) -> dict:
    """Page through api_get_authorizer_list; unknown and missing authorizers become attention
    items (never silent deletions). Returns counts."""
    client = wechat_client()
    listed = call_with_component_token(
        lambda token: {
            i.authorizer_appid: i for i in client.iter_authorizers(token, page_size=page_size)
        }
    )
    ours = dict(
        db.session.execute(
            select(Authorizer.appid, Grant.status).join(Grant, Grant.authorizer_id == Authorizer.id)
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
        authorizer = db.session.scalar(select(Authorizer).where(Authorizer.appid == appid))
        open_attention(
            "missing_authorizer", appid=appid, merchant_id=authorizer.merchant_id,
            details={"authorizer_id": authorizer.id},
        )  # fmt: skip
    counts = {"listed": len(listed), "ours": len(ours), "unknown": len(unknown),
              "missing": len(missing)}  # fmt: skip
    audit.record("authorizers.reconciled", **counts)
    db.session.commit()
    return counts


def reconcile_job() -> str:
    """Job: reconcile the authorizer list with our grants."""
    counts = reconcile_authorizers()
    return ", ".join(f"{k}={v}" for k, v in counts.items())
