"""Serving authorizer tokens from custody: the token API's read path, and token health.

A read is one column query on the fast path; a token too close to expiry is refreshed through
the same per-row lease the sweep uses (`tokens.claim_one` / `tokens.refresh_one`), so a read and
a sweep never refresh one row twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select

from app.extensions import db
from app.models import Authorizer, AuthorizerToken, Grant, GrantStatus
from app.services import DomainError, clock
from app.services.authorization.authorizers import AuthorizerNotFound, platforms_holding
from app.services.custody.sweep import claim_one, new_owner, refresh_one

SERVE_MIN_REMAINING = timedelta(minutes=5)  # the API never hands out a token closer to expiry
_T = AuthorizerToken


class TokenUnavailable(DomainError):
    code = "token_unavailable"


class NeedsReauthorization(DomainError):
    code = "needs_reauthorization"


class HeldOnSeveralPlatforms(DomainError):
    """The appid is authorized to several of our platforms: the caller must name one."""

    code = "ambiguous_platform"

    def __init__(self, component_appids: list[str]):
        super().__init__("held on several platforms", component_appids=component_appids)
        self.component_appids = component_appids


def platform_of(appid: str, component_appid: str | None) -> str:
    """The platform whose authorization of `appid` a caller means: the one named, else the
    only one holding it (HeldOnSeveralPlatforms when several do, AuthorizerNotFound if none)."""
    if component_appid:
        return component_appid
    holding = platforms_holding(appid)
    if not holding:
        raise AuthorizerNotFound()
    if len(holding) > 1:
        raise HeldOnSeveralPlatforms(holding)
    return holding[0]


@dataclass(frozen=True)
class ServedToken:
    """An access token handed out from custody, with what the caller audits."""

    authorizer_id: int
    merchant_id: int | None
    component_appid: str
    access_token: str = field(repr=False)
    expires_at: datetime


# The API's fast path: one read, no entities loaded and no refresh token decrypted.
_CUSTODY = (
    select(
        Authorizer.id,
        Authorizer.merchant_id,
        Authorizer.component_appid,
        Grant.status,
        _T.access_token,
        _T.access_expires_at,
        _T.refresh_token.is_not(None).label("has_refresh_token"),
    )
    .join(Grant, Grant.authorizer_id == Authorizer.id)
    .outerjoin(_T, _T.authorizer_id == Authorizer.id)
    .where(
        Authorizer.component_appid == bindparam("component_appid"),
        Authorizer.appid == bindparam("appid"),
    )
)


def access_token(
    appid: str,
    *,
    component_appid: str | None = None,
    min_remaining: timedelta = SERVE_MIN_REMAINING,
    wait: float = 10.0,
) -> ServedToken:
    """A valid access token from custody for the account's authorization to a platform (see
    `platform_of`); refreshed through the same lease if needed."""
    deadline = time.monotonic() + wait
    refreshed = False
    key = {"component_appid": platform_of(appid, component_appid), "appid": appid}
    while True:
        row = db.session.execute(_CUSTODY, key).first()
        if row is None:
            raise AuthorizerNotFound()
        if row.status is not GrantStatus.ACTIVE:
            raise NeedsReauthorization()
        if not row.has_refresh_token:
            raise TokenUnavailable()
        if row.access_token and row.access_expires_at - clock.now() > min_remaining:
            return ServedToken(
                row.id, row.merchant_id, row.component_appid, row.access_token,
                row.access_expires_at,
            )  # fmt: skip
        if refreshed:  # by us, yet still not usable: do not loop on WeChat
            raise TokenUnavailable(outcome="refreshed_short")
        owner = new_owner()
        if claim_one(row.id, owner):
            outcome = refresh_one(row.id, owner)
            if outcome == "needs_reauthorization":
                raise NeedsReauthorization()
            if outcome not in ("refreshed", "recovered"):
                raise TokenUnavailable(outcome=outcome)
            refreshed = True
            continue  # read the fresh token
        # Someone else holds the lease: wait for their refresh.
        if time.monotonic() > deadline:
            raise TokenUnavailable(outcome="lease_busy")
        time.sleep(0.05)


def token_health(authorizer: Authorizer) -> dict:
    """Expiry, last refresh, failures and last error of an authorizer's tokens (no secrets)."""
    row = authorizer.token
    if row is None:
        return {"has_refresh_token": False}
    return {
        "has_refresh_token": bool(row.refresh_token),
        "access_expires_at": row.access_expires_at,
        "last_refresh_at": row.last_refresh_at,
        "refresh_token_updated_at": row.refresh_token_updated_at,
        "consecutive_failures": row.consecutive_failures,
        "last_error_code": row.last_error_code,
        "next_attempt_at": row.next_attempt_at,
    }
