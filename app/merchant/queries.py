"""Read-only queries for the merchant pages: scoped to one merchant, 404 for anything else."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import abort
from sqlalchemy import or_, select

from app.extensions import db
from app.models import AuditEntry, AuthorizationSession, Authorizer, GrantChange, SessionStatus
from app.services import clock
from app.services.authorization import authorizers
from app.services.platform import platforms
from app.wechat import permissions

FINAL = {"completed", "mismatch", "failed", "expired"}
PURGED = "authorizer.purged"


def required_set_ids(account_type: str | None, component_appid: str | None = None) -> list[int]:
    """The sets the platform (default: the current one) needs for this account type."""
    return platforms.required_set_ids(account_type, component_appid)


def required_of(account: Authorizer) -> list[int]:
    """The sets the account's platform needs for its type."""
    return required_set_ids(account.account_type, account.component_appid)


def offered_sets(account_type: str, component_appid: str | None = None):
    """Catalog entries for the account type that the platform (default: the current one)
    offers: its own list, else PLATFORM_PERMISSION_SETS."""
    offered = set(platforms.offered_set_ids(component_appid))
    return [s for s in permissions.for_account_type(account_type) if s.id in offered]


def account_type_of(session: AuthorizationSession) -> str | None:
    """The account type a session asked for (auth_type 1 or 2), if it named one."""
    return {1: "official_account", 2: "mini_program"}.get(session.auth_type)


def set_rows(set_ids, locale: str) -> list[dict]:
    """Names, descriptions and exclusivity of sets, for templates."""
    return [
        {
            "id": i,
            "name": permissions.name(i, locale),
            "description": permissions.description(i, locale),
            "exclusive": bool(permissions.is_exclusive(i)),
        }
        for i in sorted(set(set_ids or []))
    ]


# --- sessions ------------------------------------------------------------------------------------


def merchant_session(merchant_id: int, public_id: str) -> AuthorizationSession:
    """One of the merchant's sessions, else 404."""
    session = db.session.scalar(
        select(AuthorizationSession).where(AuthorizationSession.public_id == public_id)
    )
    if session is None or session.merchant_id != merchant_id:
        abort(404)
    return session


def session_state(session: AuthorizationSession) -> str:
    """waiting, finishing, completed, mismatch, failed or expired (read-only view of expiry)."""
    if session.status is SessionStatus.OPEN:
        # WeChat confirmed: the code is being exchanged, or kept for a retry after a failure.
        if session.exchanging_at is not None or session.retry_auth_code is not None:
            return "finishing"
        return "expired" if session.expires_at <= clock.now() else "waiting"
    return session.status.value


def open_sessions(merchant_id: int) -> list[AuthorizationSession]:
    """Connections the merchant started and has not finished (newest first)."""
    query = (
        select(AuthorizationSession)
        .where(
            AuthorizationSession.merchant_id == merchant_id,
            AuthorizationSession.status == SessionStatus.OPEN,
            AuthorizationSession.expires_at > clock.now(),
            AuthorizationSession.biz_appid.is_(None),
        )
        .order_by(AuthorizationSession.created_at.desc())
        .limit(5)
    )
    return list(db.session.scalars(query))


def pending_session(account: Authorizer) -> AuthorizationSession | None:
    """The open update session of an account (the "update pending" badge), if any."""
    if account.grant is None or account.grant.pending_session_id is None:
        return None
    session = db.session.get(AuthorizationSession, account.grant.pending_session_id)
    return session if session and session.merchant_id == account.merchant_id else None


def session_account(session: AuthorizationSession) -> Authorizer | None:
    """The merchant's account a session connected (or is pinned to), if it is still here."""
    appid = session.authorizer_appid or session.biz_appid
    if not appid:
        return None
    # An appid may be held on several platforms: the session's platform's row, the merchant's.
    return db.session.scalar(
        select(Authorizer).where(
            Authorizer.component_appid == session.component_appid,
            Authorizer.appid == appid,
            Authorizer.merchant_id == session.merchant_id,
        )
    )


# --- accounts -----------------------------------------------------------------------------------


def merchant_account(merchant_id: int, authorizer_id: int) -> Authorizer:
    """One of the merchant's accounts, else 404."""
    try:
        return authorizers.get_merchant_authorizer(merchant_id, authorizer_id)
    except authorizers.AuthorizerNotFound:
        abort(404)


@dataclass
class Tombstone:
    """What is left of an account after its data was purged (from the audit log)."""

    authorizer_id: int
    reason: str
    at: datetime


def account_or_tombstone(merchant_id: int, authorizer_id: int):
    """(account, None) while it exists; (None, tombstone) once purged; else 404."""
    account = db.session.get(Authorizer, authorizer_id)
    if account is not None:
        if account.merchant_id != merchant_id:
            abort(404)
        return account, None
    entry = db.session.scalar(
        select(AuditEntry)
        .where(
            AuditEntry.action == PURGED,
            AuditEntry.merchant_id == merchant_id,
            AuditEntry.target_type == "authorizer",
            AuditEntry.target_id == str(authorizer_id),
        )
        .order_by(AuditEntry.id.desc())
    )
    if entry is None:
        abort(404)
    return None, Tombstone(authorizer_id, entry.details.get("reason", ""), entry.at)


def missing_required(account: Authorizer) -> list[int]:
    """Sets the provider needs that this account has not granted."""
    granted = account.grant.set_ids if account.grant else []
    return authorizers.missing_required(account.account_type, granted, account.component_appid)


def sets_to_request(account: Authorizer, extra=()) -> list[int]:
    """What a "request missing" asks for: the grant plus the missing required and `extra` sets."""
    granted = set(account.grant.set_ids if account.grant else [])
    kind = account.account_type or "official_account"
    offered = {s.id for s in offered_sets(kind, account.component_appid)}
    wanted = (set(missing_required(account)) | set(extra)) & offered
    return sorted(granted | wanted)


def history(account: Authorizer) -> list[GrantChange]:
    """Changes of the grant, newest first."""
    return list(reversed(account.grant.changes)) if account.grant else []


def account_sessions(account: Authorizer, limit: int = 10) -> list[AuthorizationSession]:
    """Sessions that connected or updated this account, newest first."""
    query = (
        select(AuthorizationSession)
        .where(
            AuthorizationSession.merchant_id == account.merchant_id,
            AuthorizationSession.component_appid == account.component_appid,
            or_(
                AuthorizationSession.authorizer_appid == account.appid,
                AuthorizationSession.biz_appid == account.appid,
            ),
        )
        .order_by(AuthorizationSession.created_at.desc())
        .limit(limit)
    )
    return list(db.session.scalars(query))


def timeline(account: Authorizer) -> list[dict]:
    """Grant changes and connection attempts, newest first, as (at, kind, item) rows."""
    rows = [{"at": c.at, "kind": "change", "item": c} for c in history(account)]
    for session in account_sessions(account):
        state = session_state(session)
        at = session.completed_at or session.created_at
        if state != "completed":  # a completed session is already a grant change
            rows.append({"at": at, "kind": "session", "item": session, "state": state})
    return sorted(rows, key=lambda row: row["at"], reverse=True)


def health(account: Authorizer) -> str:
    """ok, retrying, needs_reauthorization or unknown: the connection in plain words."""
    if account.grant is None:
        return "unknown"
    if account.grant.status.value == "needs_reauthorization":
        return "needs_reauthorization"
    token = account.token
    if token is not None and token.consecutive_failures:
        return "retrying"
    return "ok"


@dataclass
class PastAuthorization:
    """A receipt of an ended authorization: no profile data, only what the tombstone keeps."""

    account_type: str | None
    authorized_at: datetime | None
    ended_at: datetime
    reason: str


def past_authorizations(merchant_id: int, limit: int = 20) -> list[PastAuthorization]:
    """The merchant's ended authorizations (newest first), from the purge tombstones."""
    entries = db.session.scalars(
        select(AuditEntry)
        .where(AuditEntry.action == PURGED, AuditEntry.merchant_id == merchant_id)
        .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
        .limit(limit)
    )
    return [
        PastAuthorization(
            account_type=e.details.get("account_type"),
            authorized_at=_parse(e.details.get("authorized_at")),
            ended_at=e.at,
            reason=e.details.get("reason", ""),
        )
        for e in entries
    ]


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
