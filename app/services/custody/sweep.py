"""Authorizer token custody: refresh sweeps under per-row leases, and recovery.

A sweeper claims a batch of rows near expiry with one guarded UPDATE (the lease), refreshes them
with bounded concurrency and stores the access token and any rotated refresh token in the same
transaction. Leases make each row refreshed by exactly one worker across processes and hosts; a
worker that dies simply lets its leases lapse (the stored refresh token is never removed first).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import timedelta

from flask import current_app
from sqlalchemy import bindparam, or_, select, update

from app.extensions import db
from app.models import Authorizer, AuthorizerToken, Grant, GrantStatus
from app.services import DomainError, clock
from app.services.authorization import grants
from app.services.platform import credentials, platforms
from app.services.platform.credentials import call_with_component_token
from app.services.platform.platforms import current_appid, using, wechat_client
from app.wechat.errors import (
    InvalidCredential,
    InvalidRefreshToken,
    NotAuthorized,
    WeChatError,
)

log = logging.getLogger(__name__)

REFRESH_AHEAD = timedelta(minutes=15)  # sweep refreshes tokens expiring within this
LEASE = timedelta(seconds=60)  # default of AUTHORIZER_SWEEP_LEASE_SECONDS
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)
_T = AuthorizerToken
_ROW = AuthorizerToken.__table__.c
# Built once: the sweep runs it per refresh, with the SET columns given as parameters.
_UPDATE_OWNED = update(AuthorizerToken.__table__).where(
    _ROW.authorizer_id == bindparam("b_id"), _ROW.lease_owner == bindparam("b_owner")
)
_HEALTHY_RELEASED = {"consecutive_failures": 0, "last_error_code": None, "next_attempt_at": None,
                     "lease_owner": None, "lease_until": None}  # fmt: skip


def _lease() -> timedelta:
    """How long a claimed row stays ours: a dead worker's rows wait this long."""
    return timedelta(seconds=current_app.config["AUTHORIZER_SWEEP_LEASE_SECONDS"])


@dataclass
class SweepResult:
    """What one sweep did: counts per outcome (refreshed, recovered, backoff, ...)."""

    owner: str
    outcomes: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def refreshed(self) -> int:
        return self.outcomes["refreshed"] + self.outcomes["recovered"]


def new_owner() -> str:
    """A lease-owner id unique across hosts, processes and threads."""
    return (
        f"{socket.gethostname()[:24]}:{os.getpid()}:{threading.get_ident() % 10**6}:"
        + (uuid.uuid4().hex[:8])
    )


# --- sweep --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claim:
    """A row leased to `owner`, as its refresh needs it (the plaintext stays in memory)."""

    authorizer_id: int
    component_appid: str
    appid: str
    refresh_token: str | None = field(repr=False)
    owner: str


def sweep_tokens(
    *,
    batch_size: int | None = None,
    concurrency: int | None = None,
    ahead: timedelta = REFRESH_AHEAD,
    owner: str | None = None,
    max_batches: int | None = None,
) -> SweepResult:
    """Refresh every active authorizer token of the current platform expiring within `ahead`,
    batch by batch (batch size and threads default to AUTHORIZER_SWEEP_BATCH / _CONCURRENCY)."""
    batch_size = batch_size or current_app.config["AUTHORIZER_SWEEP_BATCH"]
    concurrency = concurrency or current_app.config["AUTHORIZER_SWEEP_CONCURRENCY"]
    result = SweepResult(owner or new_owner())
    started = time.monotonic()
    app = current_app._get_current_object()
    recovery = _ListCache()
    batches = 0
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        while max_batches is None or batches < max_batches:
            claims = _claims(claim_batch(result.owner, batch_size, ahead=ahead), result.owner)
            if not claims:
                break
            batches += 1
            token = _component_token_or_none()
            calls = {pool.submit(_call_in_app, app, claim, token): claim for claim in claims}
            # The workers only talk HTTP; this thread stores each answer in its own short
            # transaction, so they never queue on the write lock (SQLite sleeps while it waits).
            for call in as_completed(calls):
                result.outcomes[_settle_safely(calls[call], call.result(), recovery)] += 1
    result.seconds = time.monotonic() - started
    return result


def _component_token_or_none() -> str | None:
    try:
        return credentials.component_access_token()
    except DomainError:
        return None  # each refresh then reports the failure through the guarded path


def claim_batch(owner: str, limit: int, *, ahead: timedelta = REFRESH_AHEAD) -> list[int]:
    """Lease up to `limit` due rows of the current platform to `owner` in one guarded UPDATE;
    returns their ids."""
    now = clock.now()
    free = or_(_T.lease_until.is_(None), _T.lease_until < now)
    due = (
        select(_T.authorizer_id)
        .join(Grant, Grant.authorizer_id == _T.authorizer_id)
        .join(Authorizer, Authorizer.id == _T.authorizer_id)
        .where(
            Authorizer.component_appid == current_appid(),
            Grant.status == GrantStatus.ACTIVE,
            _T.refresh_token.is_not(None),
            or_(_T.access_expires_at.is_(None), _T.access_expires_at < now + ahead),
            or_(_T.next_attempt_at.is_(None), _T.next_attempt_at <= now),
            free,
        )
        .order_by(_T.access_expires_at)
        .limit(limit)
    )
    if db.session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True, of=_T)
    # `free` again on the outer row: a concurrent claimer that lost the race re-checks it.
    rows = db.session.execute(
        update(_T)
        .where(_T.authorizer_id.in_(due.scalar_subquery()), free)
        .values(lease_owner=owner, lease_until=now + _lease())
        .returning(_T.authorizer_id)
        .execution_options(synchronize_session=False)
    ).all()
    db.session.commit()
    return [row[0] for row in rows]


def claim_one(authorizer_id: int, owner: str) -> bool:
    """Lease one row (for an on-demand refresh) if nobody holds it."""
    now = clock.now()
    claimed = db.session.execute(
        update(_T)
        .where(
            _T.authorizer_id == authorizer_id, or_(_T.lease_until.is_(None), _T.lease_until < now)
        )
        .values(lease_owner=owner, lease_until=now + _lease())
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return claimed == 1


def _claims(ids: list[int], owner: str) -> list[_Claim]:
    """What the refresh of each row still leased to `owner` needs, read in one statement."""
    if not ids:
        return []
    rows = db.session.execute(
        select(_T.authorizer_id, Authorizer.component_appid, Authorizer.appid, _T.refresh_token)
        .join(Authorizer, Authorizer.id == _T.authorizer_id)
        .where(_T.authorizer_id.in_(ids), _T.lease_owner == owner)
    ).all()
    db.session.commit()  # hold no connection (or SQLite read snapshot) during the HTTP calls
    return [_Claim(*row, owner) for row in rows]


def _load(authorizer_id: int) -> AuthorizerToken | None:
    return db.session.execute(
        select(_T)
        .where(_T.authorizer_id == authorizer_id)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def refresh_one(
    authorizer_id: int,
    owner: str,
    *,
    recovery: _ListCache | None = None,
    component_token: str | None = None,
) -> str:
    """Refresh one leased row, as its platform; returns the outcome name. Never drops the
    refresh token."""
    claims = _claims([authorizer_id], owner)
    if not claims:
        return "lost_lease"
    with using(claims[0].component_appid):
        return _settle(claims[0], _attempt(claims[0], component_token), recovery)


def _attempt(claim: _Claim, component_token: str | None) -> tuple[object, Exception | None]:
    """WeChat's answer to the refresh, or the error it raised (settled by the caller)."""
    try:
        return _call_refresh(claim.appid, claim.refresh_token, component_token), None
    except Exception as error:
        return None, error


def _call_in_app(app, claim: _Claim, component_token: str | None):
    # A pool thread starts with an empty context: the platform is set again here.
    with app.app_context(), using(claim.component_appid):
        return _attempt(claim, component_token)


def _settle_safely(claim: _Claim, answer, recovery: _ListCache) -> str:
    try:
        return _settle(claim, answer, recovery)
    except Exception:  # the lease lapses; the stored refresh token is intact
        log.exception("authorizer %s: refresh crashed", claim.authorizer_id)
        db.session.rollback()
        return "error"


def _settle(claim: _Claim, answer, recovery: _ListCache | None) -> str:
    """Record one refresh attempt's outcome: stored, recovered, lost grant or backoff."""
    result, error = answer
    if error is None:
        return _store(claim, result)
    if isinstance(error, InvalidRefreshToken):
        return _recover(claim, recovery or _ListCache())
    if isinstance(error, NotAuthorized):
        return _lost_grant(claim, "not_authorized", 61003)
    if isinstance(error, WeChatError | DomainError):
        credentials.raise_errcode_alert(error, api="api_authorizer_token")  # 61004, 45009, ...
        return _back_off(claim, getattr(error, "errcode", None))
    raise error


def _call_refresh(appid: str, refresh_token: str, component_token: str | None = None):
    client = wechat_client()
    if component_token:
        # The sweep reads the component token once per batch; a rejection falls back to the
        # guarded path, which invalidates exactly that token and retries once.
        try:
            return client.authorizer_token(component_token, appid, refresh_token)
        except InvalidCredential:
            pass
    return call_with_component_token(
        lambda token: client.authorizer_token(token, appid, refresh_token)
    )


def _store(claim: _Claim, result) -> str:
    """Access token, rotated refresh token and reset health in one UPDATE, lease released."""
    now, rotated = clock.now(), {}
    if result.authorizer_refresh_token not in ("", claim.refresh_token):
        rotated = {
            "refresh_token": result.authorizer_refresh_token,
            "refresh_token_updated_at": now,
        }
    expires_at = now + timedelta(seconds=result.expires_in)
    stored = _update_owned(claim, {**_HEALTHY_RELEASED, **rotated, "last_refresh_at": now,
                                   "access_token": result.authorizer_access_token,
                                   "access_expires_at": expires_at})  # fmt: skip
    if not stored and rotated:
        _keep_rotated(claim, rotated)
    db.session.commit()
    return "refreshed" if stored else "lost_lease"


def _keep_rotated(claim: _Claim, rotated: dict) -> None:
    """The lease lapsed mid-call: keep the rotated refresh token unless a new holder replaced it."""
    where = _T.authorizer_id == claim.authorizer_id
    if db.session.scalar(select(_T.refresh_token).where(where)) == claim.refresh_token:
        db.session.execute(update(_T).where(where).values(rotated))


def _update_owned(claim: _Claim, values: dict) -> bool:
    """UPDATE the row only while `claim.owner` still holds its lease."""
    params = {"b_id": claim.authorizer_id, "b_owner": claim.owner, **values}
    return db.session.execute(_UPDATE_OWNED, params).rowcount == 1


def _owned_row(claim: _Claim) -> AuthorizerToken | None:
    row = _load(claim.authorizer_id)
    if row is None or row.lease_owner != claim.owner:
        db.session.rollback()
        return None
    return row


def _back_off(claim: _Claim, errcode: int | None) -> str:
    row = _owned_row(claim)
    if row is None:
        return "lost_lease"
    row.consecutive_failures = (row.consecutive_failures or 0) + 1
    row.last_error_code, row.last_error_at = errcode, clock.now()
    delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (row.consecutive_failures - 1))
    row.next_attempt_at = clock.now() + delay
    row.lease_owner = row.lease_until = None
    db.session.commit()
    return "backoff"


def _lost_grant(claim: _Claim, reason: str, errcode: int) -> str:
    row = _owned_row(claim)
    if row is None:
        return "lost_lease"
    row.consecutive_failures = (row.consecutive_failures or 0) + 1
    row.last_error_code, row.last_error_at = errcode, clock.now()
    row.access_token = row.access_expires_at = None
    row.lease_owner = row.lease_until = None
    grants.mark_needs_reauthorization(row.authorizer, reason=reason, source="sweep")
    db.session.commit()
    return "needs_reauthorization"


class _ListCache:
    """api_get_authorizer_list, read once per sweep (at the first 61023)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._tokens: dict[str, str] | None = None

    def refresh_token(self, appid: str) -> str:
        with self._lock:
            if self._tokens is None:
                client = wechat_client()
                self._tokens = call_with_component_token(
                    lambda token: {i.authorizer_appid: i.refresh_token for i in
                                   client.iter_authorizers(token)}
                )  # fmt: skip
            return self._tokens.get(appid, "")


def _recover(claim: _Claim, recovery: _ListCache) -> str:
    """61023: take the current refresh token from api_get_authorizer_list and retry once."""
    try:
        candidate = recovery.refresh_token(claim.appid)
    except (WeChatError, DomainError) as error:
        return _back_off(claim, getattr(error, "errcode", 61023))
    if not candidate or candidate == claim.refresh_token:
        return _lost_grant(claim, "refresh_token_invalid", 61023)
    # Persist the recovered token before using it, so a crash cannot lose it.
    if not _update_owned(
        claim, {"refresh_token": candidate, "refresh_token_updated_at": clock.now()}
    ):
        db.session.rollback()
        return "lost_lease"
    db.session.commit()
    claim = replace(claim, refresh_token=candidate)
    try:
        result = _call_refresh(claim.appid, candidate)
    except InvalidRefreshToken:
        return _lost_grant(claim, "refresh_token_invalid", 61023)
    except (WeChatError, DomainError) as error:
        return _back_off(claim, getattr(error, "errcode", None))
    if _store(claim, result) != "refreshed":
        return "lost_lease"
    log.info("authorizer %s: refresh token recovered from the authorizer list", claim.authorizer_id)
    return "recovered"


def sweep_job() -> str:
    """Job: one sweep of every platform's authorizer tokens near expiry."""

    def sweep() -> str:
        result = sweep_tokens()
        return ", ".join(f"{k}={v}" for k, v in sorted(result.outcomes.items())) or "nothing due"

    return platforms.each(sweep)
