"""Custody of the platform credentials: the verify ticket and the component access token.

The database is the single source of truth. One lease on the token row lets exactly one
process (on any host) refresh; invalidation is compare-and-swap on the token's hash, so a
stale failure can never discard a token somebody else just fetched.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from flask import current_app
from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import AuditEntry, ComponentCredential, VerifyTicket
from app.services import DomainError, clock
from app.services.audit import record
from app.services.platform import health, platforms
from app.services.platform.platforms import wechat_client
from app.wechat.errors import (
    ApiError,
    InvalidCredential,
    QuotaExceeded,
    TicketInvalid,
    TransportError,
)
from app.wechat.events import ComponentVerifyTicket

T = TypeVar("T")
TICKET_TTL = timedelta(hours=12)
TICKET_WRITE_ATTEMPTS = 3
_tickets = VerifyTicket.__table__
# FOR UPDATE makes concurrent pushes queue on the row (PostgreSQL) instead of racing to the
# guarded UPDATE below and retrying; SQLite ignores it, and there the guard alone keeps a stale
# read from winning.
_READ_TICKET = (
    select(_tickets.c.create_time, _tickets.c.value, _tickets.c.pushes, _tickets.c.last_push_at)
    .where(_tickets.c.component_appid == bindparam("appid"))
    .with_for_update()
)
# `pushes` is the row's version: the write applies only to the row as it was read.
_WRITE_TICKET = update(_tickets).where(
    _tickets.c.component_appid == bindparam("b_appid"),
    _tickets.c.pushes == bindparam("b_seen_pushes"),
)
EXPIRY_SAFETY = timedelta(seconds=60)  # never hand out a token with less than this left
_CC = ComponentCredential


class CredentialsUnavailable(DomainError):
    """No usable component token: no valid ticket, WeChat refused, or the refresher is stuck."""

    code = "credentials_unavailable"


def _appid() -> str:
    return platforms.current_appid()


def _per_platform(name: str) -> str:
    """A rate-limit slot's name for the current platform (the default keeps the bare name)."""
    appid = _appid()
    return name if platforms.is_default(appid) else f"{name}:{appid}"


def _setting(name: str) -> int:
    return int(current_app.config[name])


def token_hash(token: str) -> str:
    """SHA-256 of a token: what compare-and-swap matches on."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# --- ticket ---------------------------------------------------------------------------------


def store_ticket(event: ComponentVerifyTicket) -> datetime | None:
    """Keep the newest ticket (encrypted, arrival + 12 h); returns when the previous push
    arrived (None for the first ticket)."""
    now, appid = clock.now(), _appid()
    connection = db.session.connection()  # Core on the hot path; same transaction
    for _attempt in range(TICKET_WRITE_ATTEMPTS):
        seen = connection.execute(_READ_TICKET, {"appid": appid}).first()
        if seen is None:
            if _insert_ticket(event, now):
                return None
            continue  # the first ticket arrived twice at once: update the winner's row
        # An older push delivered late keeps the newer ticket; WeChat also re-pushes the same
        # ticket for a while, and that does not extend its validity.
        newer = event.create_time >= seen.create_time
        changed = newer and seen.value != event.ticket
        values = {"last_push_at": now, "pushes": seen.pushes + 1}
        if newer:
            values["create_time"] = event.create_time
        if changed:
            values.update(value=event.ticket, received_at=now, expires_at=now + TICKET_TTL)
        # A concurrent push that wrote first makes this match nothing; we decide again on the
        # fresh row.
        guard = {"b_appid": appid, "b_seen_pushes": seen.pushes}
        written = connection.execute(_WRITE_TICKET, {**guard, **values}).rowcount
        if written:
            if changed:
                record(
                    "ticket.received",
                    target_type="component",
                    target_id=appid,
                    expires_at=_iso(now),
                )
            return seen.last_push_at
    raise RuntimeError("the ticket row kept changing under concurrent pushes")


def _insert_ticket(event: ComponentVerifyTicket, now: datetime) -> bool:
    try:
        with db.session.begin_nested():
            db.session.add(
                VerifyTicket(
                    component_appid=_appid(),
                    value=event.ticket,
                    create_time=event.create_time,
                    received_at=now,
                    expires_at=now + TICKET_TTL,
                    last_push_at=now,
                )
            )
    except IntegrityError:  # the first ticket arrived twice at once; update the winner's row
        return False
    record("ticket.received", target_type="component", target_id=_appid(), first=True)
    return True


def handle_ticket_event(event: ComponentVerifyTicket) -> None:
    """Inbox handler for component_verify_ticket (runs in the transaction storing the push).

    A push after a silence long enough for the watchdog's alert resolves that alert too, in the
    same transaction; pushes in a steady stream skip the check (the watchdog itself resolves an
    alert it raised while a push was on its way)."""
    previous_push = store_ticket(event)
    window = timedelta(seconds=_setting("TICKET_SILENCE_ALERT_SECONDS"))
    if previous_push is None or clock.now() - previous_push >= window:
        health.resolve_alert(health.TICKET_SILENT, session=db.session)


def current_ticket() -> str | None:
    """The last good ticket while it is still within its 12 h, else None."""
    row = _ticket_row()
    if row is None or row.expires_at <= clock.now():
        return None
    return row.value


def _ticket_row() -> VerifyTicket | None:
    with health.own_transaction() as session:
        return session.scalar(select(VerifyTicket).where(VerifyTicket.component_appid == _appid()))


def ticket_status() -> dict:
    """Ticket facts for the health view (never the value)."""
    row, now = _ticket_row(), clock.now()
    if row is None:
        return {"present": False, "valid": False}
    return {
        "present": True,
        "valid": row.expires_at > now,
        "received_at": row.received_at,
        "expires_at": row.expires_at,
        "last_push_at": row.last_push_at,
        "silent_seconds": int((now - row.last_push_at).total_seconds()),
        "pushes": row.pushes,
    }


def ticket_watchdog() -> str:
    """Job: watch every platform's ticket pushes."""
    return platforms.each(_watch_ticket)


def _watch_ticket() -> str:
    """Alert when no ticket push came within the window and ask WeChat to restart pushes."""
    status = ticket_status()
    window = _setting("TICKET_SILENCE_ALERT_SECONDS")
    if status["present"] and status["silent_seconds"] < window:
        health.resolve_alert(health.TICKET_SILENT)
        return "ok"
    last = status.get("last_push_at")
    health.raise_alert(health.TICKET_SILENT, last_push_at=_iso(last) if last else None)
    slot = _per_platform("api_start_push_ticket")
    if not health.claim_slot(slot, _setting("START_PUSH_TICKET_MIN_INTERVAL")):
        return "silent; start_push_ticket called recently"
    try:
        result = wechat_client().start_push_ticket()
    except (ApiError, TransportError) as exc:
        raise_errcode_alert(exc, api="api_start_push_ticket")
        health.finish_slot(slot, "error", str(exc)[:200])
        return f"silent; start_push_ticket failed: {exc}"
    health.finish_slot(slot, "ok", result.errmsg[:200])
    with health.own_transaction() as session:
        health.audit(session, "ticket.start_push_requested", already_running=result.already_running)
    return "silent; start_push_ticket called"


# --- component token ------------------------------------------------------------------------


def token_status() -> dict:
    """Component token facts for the health view (never the value)."""
    with health.own_transaction() as session:
        row = session.scalar(select(_CC).where(_CC.component_appid == _appid()))
    if row is None or row.expires_at is None:
        return {"present": False, "refreshes": row.refreshes if row else 0}
    return {
        "present": True,
        "obtained_at": row.obtained_at,
        "expires_at": row.expires_at,
        "valid": row.expires_at > clock.now(),
        "refreshes": row.refreshes,
        "leased": row.lease_until is not None and row.lease_until > clock.now(),
    }


def component_access_token() -> str:
    """A valid component token; one process refreshes under the lease, the others wait."""
    deadline = time.monotonic() + _setting("COMPONENT_TOKEN_WAIT_SECONDS")
    ahead = timedelta(seconds=_setting("COMPONENT_TOKEN_REFRESH_AHEAD"))
    while True:
        token, expires_at = _read_token()
        now = clock.now()
        if token and expires_at - now > ahead:
            return token
        owner = _acquire_lease()
        if owner:
            return _refresh_under_lease(owner, ahead)
        if token and expires_at - now > EXPIRY_SAFETY:
            return token  # someone else is refreshing ahead of expiry; this one still works
        if time.monotonic() > deadline:
            raise CredentialsUnavailable("timed out waiting for the component token refresh")
        time.sleep(0.05)


def _read_token() -> tuple[str | None, datetime | None]:
    with health.own_transaction() as session:
        row = session.execute(
            select(_CC.token, _CC.expires_at).where(_CC.component_appid == _appid())
        ).first()
        if row is None:
            _ensure_row(session)
            return None, None
    return row.token, row.expires_at


def _ensure_row(session) -> None:
    try:
        with session.begin_nested():
            session.add(_CC(component_appid=_appid()))
    except IntegrityError:
        pass  # created by a concurrent reader


def _acquire_lease() -> str | None:
    """Take the refresh lease if nobody holds it (UPDATE ... RETURNING); returns our owner id."""
    owner = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:8]}"
    now = clock.now()
    free = [_CC.component_appid == _appid(), or_(_CC.lease_until.is_(None), _CC.lease_until < now)]
    with health.own_transaction() as session:
        if session.bind.dialect.name == "postgresql":
            # Skip a row another refresher has locked instead of queueing behind it.
            free.append(_CC.id.in_(select(_CC.id).where(*free).with_for_update(skip_locked=True)))
        lease_until = now + timedelta(seconds=_setting("COMPONENT_TOKEN_LEASE_SECONDS"))
        got = session.execute(
            update(_CC)
            .where(*free)
            .values(lease_owner=owner, lease_until=lease_until)
            .returning(_CC.id)
        ).first()
    return owner if got else None


def _release_lease(owner: str) -> None:
    with health.own_transaction() as session:
        session.execute(
            update(_CC)
            .where(_CC.component_appid == _appid(), _CC.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
        )


def _refresh_under_lease(owner: str, ahead: timedelta) -> str:
    try:
        token, expires_at = _read_token()  # a refresher may have finished just before us
        if token and expires_at - clock.now() > ahead:
            return token
        return _fetch_and_store(owner)
    finally:
        _release_lease(owner)


def _fetch_and_store(owner: str) -> str:
    ticket = current_ticket()
    if ticket is None:
        health.raise_alert(health.NO_VALID_TICKET)
        raise CredentialsUnavailable("no valid component_verify_ticket")
    try:
        result = wechat_client().component_token(ticket)
    except TicketInvalid as exc:
        health.raise_alert(health.TICKET_REJECTED, errcode=exc.errcode, rid=exc.rid)
        raise CredentialsUnavailable("WeChat rejected the ticket", errcode=exc.errcode) from None
    except QuotaExceeded as exc:
        raise_errcode_alert(exc, api="api_component_token")
        raise CredentialsUnavailable("api_component_token quota exhausted") from None
    except (ApiError, TransportError) as exc:
        if raise_errcode_alert(exc, api="api_component_token") is None:
            health.raise_alert(health.TOKEN_REFRESH_FAILED, error=str(exc)[:200])
        raise CredentialsUnavailable("component token refresh failed") from None
    now = clock.now()
    expires_at = now + timedelta(seconds=result.expires_in)
    with health.own_transaction() as session:
        session.execute(
            update(_CC)
            .where(_CC.component_appid == _appid(), _CC.lease_owner == owner)
            .values(
                token=result.component_access_token,
                token_hash=token_hash(result.component_access_token),
                obtained_at=now,
                expires_at=expires_at,
                refreshes=_CC.refreshes + 1,
            )
        )
        health.audit(session, "component_token.refreshed", expires_at=_iso(expires_at))
    for kind in RESOLVED_BY_A_FRESH_TOKEN:
        health.resolve_alert(kind)
    if health.alert_details(health.QUOTA_EXCEEDED).get("api") == "api_component_token":
        health.resolve_alert(health.QUOTA_EXCEEDED)
    return result.component_access_token


def invalidate_component_token(token: str) -> datetime | None:
    """Forget exactly this token (compare-and-swap); returns when it was obtained, or None."""
    with health.own_transaction() as session:
        row = session.execute(
            update(_CC)
            .where(_CC.component_appid == _appid(), _CC.token_hash == token_hash(token))
            .values(token=None, token_hash=None, expires_at=None)
            .returning(_CC.obtained_at)
        ).first()
        if row is None:
            return None  # already replaced: the newer token stays
        age = int((clock.now() - row.obtained_at).total_seconds())
        health.audit(session, "component_token.invalidated", age_seconds=age)
    return row.obtained_at


def call_with_component_token(fn: Callable[[str], T]) -> T:
    """Call fn(token); on 40001/42001 invalidate that token (CAS), refresh once, retry once."""
    token = component_access_token()
    try:
        return _guarded(fn, token)
    except InvalidCredential as exc:
        _after_rejection(exc, exc.token or token)
    fresh = component_access_token()
    try:
        return _guarded(fn, fresh)
    except InvalidCredential as exc:
        _after_rejection(exc, exc.token or fresh)
        # Twice in a row: another environment keeps refreshing with our secret. Do not loop.
        health.raise_alert(health.FOREIGN_REFRESH, errcode=exc.errcode, repeated=True)
        raise CredentialsUnavailable("component token rejected twice") from None


def _guarded(fn: Callable[[str], T], token: str) -> T:
    try:
        return fn(token)
    except ApiError as exc:  # 61004, 45009, ... become their own alerts; the caller decides
        name = getattr(fn, "__name__", "")
        raise_errcode_alert(exc, api=name if name.isidentifier() else "component_api")
        raise


def _after_rejection(exc: InvalidCredential, token: str) -> None:
    obtained_at = invalidate_component_token(token)
    if obtained_at is None or exc.errcode != 40001:
        return
    age = (clock.now() - obtained_at).total_seconds()
    if age < _setting("FOREIGN_REFRESH_WINDOW"):
        # A young token WeChat calls invalid was most likely replaced by someone else's refresh.
        health.raise_alert(health.FOREIGN_REFRESH, errcode=exc.errcode, age_seconds=int(age))


RESOLVED_BY_A_FRESH_TOKEN = (
    health.NO_VALID_TICKET,
    health.TICKET_REJECTED,
    health.TOKEN_REFRESH_FAILED,
    health.IP_NOT_WHITELISTED,
    health.INVALID_APPSECRET,
)
_CLIENT_IP = re.compile(r"requestIP:\s*([0-9A-Fa-f:.]+)")
QUOTA_CLEARED = "quota.cleared"


def raise_errcode_alert(exc: Exception, *, api: str) -> str | None:
    """Raise the alert a WeChat errcode names (61004, 45009, 40125/41004); returns its kind."""
    kind = health.ERRCODE_ALERTS.get(getattr(exc, "errcode", None))
    if kind is None:
        return None
    details = {"api": api, "errcode": exc.errcode, "rid": getattr(exc, "rid", None)}
    if kind == health.IP_NOT_WHITELISTED:
        found = _CLIENT_IP.search(getattr(exc, "errmsg", "") or "")
        details["client_ip"] = getattr(exc, "client_ip", None) or (found and found.group(1))
    if kind == health.QUOTA_EXCEEDED:
        details.update(clear_quota_usage())
    health.raise_alert(kind, **details)
    return kind


def clear_quota_usage() -> dict:
    """Whether clear_quota was used this month (WeChat allows 10 resets a month)."""
    now = clock.now()
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    with health.own_transaction() as session:
        used = session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == QUOTA_CLEARED, AuditEntry.at >= month_start)
        )
    return {"clear_quota_used": bool(used), "clear_quota_this_month": int(used or 0)}


def clear_quota() -> None:
    """Reset the platform's daily API quotas (clear_quota/v2, one of 10 a month); audited."""
    wechat_client().clear_quota_v2()
    with health.own_transaction() as session:
        health.audit(session, QUOTA_CLEARED)
    health.resolve_alert(health.QUOTA_EXCEEDED)


def refresh_component_token_job() -> str:
    """Job: refresh every platform's component token when missing or within the window."""
    return platforms.each(_refresh_component_token)


def _refresh_component_token() -> str:
    try:
        component_access_token()
    except CredentialsUnavailable as exc:
        return f"unavailable: {exc}"
    return "ok"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None
