"""Aggregates for the staff overview and health pages (read only, index-friendly)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import requests
from flask import current_app
from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    AttentionItem,
    AuditEntry,
    AuthorizationSession,
    Authorizer,
    AuthorizerToken,
    DailyCounter,
    Grant,
    GrantSet,
    GrantStatus,
    HealthAlert,
    InboxEvent,
    JobRun,
    SessionStatus,
    WebhookDelivery,
)
from app.services import clock
from app.services.platform import health, platforms
from app.wechat import permissions

# Attention item kinds grouped as the overview names them.
RECONCILIATION_KINDS = ("missing_authorizer", "unknown_authorizer")
CONFLICT_KINDS = ("session_mismatch", "unsolicited_authorization")


def counts() -> dict[str, int]:
    """The four headline numbers of the overview."""
    now = clock.now()
    by_status = {
        status: db.session.scalar(select(func.count()).where(Grant.status == status))
        for status in (GrantStatus.ACTIVE, GrantStatus.NEEDS_REAUTHORIZATION)
    }
    pending = select(func.count()).where(*_pending_sessions(now))
    revoked = select(func.count()).where(
        AuditEntry.action == "authorizer.purged", AuditEntry.at >= now - timedelta(days=30)
    )
    return {
        "active": by_status.get(GrantStatus.ACTIVE, 0),
        "pending": db.session.scalar(pending),
        "revoked_30d": db.session.scalar(revoked),
        "needs_reauthorization": by_status.get(GrantStatus.NEEDS_REAUTHORIZATION, 0),
    }


def _pending_sessions(now, component_appid: str = "") -> tuple:
    """Open authorization sessions a merchant can still complete (the "pending" card)."""
    conditions = (
        AuthorizationSession.status == SessionStatus.OPEN,
        AuthorizationSession.expires_at > now,
    )
    if component_appid:
        conditions += (AuthorizationSession.component_appid == component_appid,)
    return conditions


def pending_sessions(limit: int = 200, component_appid: str = "") -> list[AuthorizationSession]:
    """The sessions the "pending sessions" card counts, soonest to expire first (one
    platform's, when given)."""
    query = select(AuthorizationSession).where(*_pending_sessions(clock.now(), component_appid))
    query = query.order_by(AuthorizationSession.expires_at, AuthorizationSession.id)
    return list(db.session.scalars(query.limit(limit)))


def pending_count(component_appid: str = "") -> int:
    """How many sessions `pending_sessions` would list without its limit."""
    conditions = _pending_sessions(clock.now(), component_appid)
    return db.session.scalar(select(func.count()).where(*conditions))


@dataclass
class AttentionSummary:
    """What needs a person: platform alerts, failing refreshes, open items, failed events."""

    alerts: list[HealthAlert]
    failing_tokens: int
    open_by_kind: dict[str, int]
    recent_items: list[AttentionItem]
    failed_events: int

    @property
    def total(self) -> int:
        return (
            len(self.alerts)
            + (1 if self.failing_tokens else 0)
            + sum(self.open_by_kind.values())
            + (1 if self.failed_events else 0)
        )

    def kinds(self, group: tuple[str, ...]) -> int:
        return sum(n for kind, n in self.open_by_kind.items() if kind in group)


def attention() -> AttentionSummary:
    """Everything the overview lists under "needs attention"."""
    open_items = select(AttentionItem).where(AttentionItem.resolved_at.is_(None))
    by_kind = select(AttentionItem.kind, func.count()).where(AttentionItem.resolved_at.is_(None))
    failing = select(func.count()).where(AuthorizerToken.consecutive_failures > 0)
    failed = select(func.count()).where(InboxEvent.outcome == "failed")
    open_by_kind = dict(db.session.execute(by_kind.group_by(AttentionItem.kind)).all())
    # The entry links to the accounts list filtered by grant status, so it counts what that list
    # shows (as the headline card does), not items that outlive a re-authorization or a dismissal.
    open_by_kind.pop("needs_reauthorization", None)
    needing = db.session.scalar(
        select(func.count()).where(Grant.status == GrantStatus.NEEDS_REAUTHORIZATION)
    )
    if needing:
        open_by_kind["needs_reauthorization"] = needing
    return AttentionSummary(
        alerts=health.active_alerts(),
        failing_tokens=db.session.scalar(failing),
        open_by_kind=open_by_kind,
        recent_items=list(
            db.session.scalars(open_items.order_by(AttentionItem.id.desc()).limit(10))
        ),
        failed_events=db.session.scalar(failed),
    )


# --- chart data ---------------------------------------------------------------------------------


def _day(column):
    """The UTC calendar day of a timestamp column, as text, on SQLite and PostgreSQL."""
    if db.engine.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.substr(column, 1, 10)


def _month(column):
    if db.engine.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM")
    return func.substr(column, 1, 7)


def grants_over_time(months: int = 12) -> list[tuple[str, int, int]]:
    """(month, newly authorized that month, cumulative total) for current grants."""
    now = clock.now()
    start = date(now.year, now.month, 1)
    for _ in range(months - 1):
        start = (start - timedelta(days=1)).replace(day=1)
    start_at = datetime(start.year, start.month, 1, tzinfo=now.tzinfo)
    before = db.session.scalar(select(func.count()).where(Grant.authorized_at < start_at))
    month = _month(Grant.authorized_at)
    rows = dict(
        db.session.execute(
            select(month, func.count()).where(Grant.authorized_at >= start_at).group_by(month)
        ).all()
    )
    series, total, cursor = [], before, start
    for _ in range(months):
        key = cursor.strftime("%Y-%m")
        total += rows.get(key, 0)
        series.append((key, rows.get(key, 0), total))
        cursor = (cursor + timedelta(days=32)).replace(day=1)
    return series


def events_per_day(days: int = 14) -> tuple[list[str], dict[str, list[int]]]:
    """Days (oldest first) and, per event type, the count of pushes received each day."""
    today = clock.now().date()
    labels = [(today - timedelta(days=days - 1 - i)).isoformat() for i in range(days)]
    since = datetime.combine(
        today - timedelta(days=days - 1), datetime.min.time(), clock.now().tzinfo
    )
    day = _day(InboxEvent.received_at)
    query = (
        select(day, InboxEvent.info_type, func.count())
        .where(InboxEvent.received_at >= since)
        .group_by(day, InboxEvent.info_type)
    )
    series: dict[str, list[int]] = {}
    index = {label: i for i, label in enumerate(labels)}
    for label, info_type, n in db.session.execute(query):
        if label in index:
            series.setdefault(info_type, [0] * days)[index[label]] += n
    return labels, dict(sorted(series.items()))


def set_coverage(offered: list[int], locale: str | None) -> list[tuple[int, str, int, int]]:
    """(set id, name, accounts granted it, accounts it applies to) for each set the platform
    offers, plus any set WeChat granted beyond them."""
    if db.engine.dialect.name == "postgresql":  # an index-only GROUP BY is fastest there
        query = select(GrantSet.set_id, func.count()).group_by(GrantSet.set_id)
        granted = dict(db.session.execute(query).all())
    else:  # SQLite: one index-range count per set beats its GROUP BY by far
        granted = {
            set_id: db.session.scalar(select(func.count()).where(GrantSet.set_id == set_id))
            for set_id in set(offered) | set(permissions.catalog())
        }
    by_type = {
        kind: db.session.scalar(select(func.count()).where(Authorizer.account_type == kind))
        for kind in permissions.ACCOUNT_TYPES
    }
    shown = sorted(set(offered) | {set_id for set_id, n in granted.items() if n})
    rows = []
    for set_id in shown:
        item = permissions.get(set_id)
        types = item.account_types if item else permissions.ACCOUNT_TYPES
        eligible = sum(by_type.get(t, 0) for t in types)
        name = permissions.name(set_id, locale)
        rows.append((set_id, name, granted.get(set_id, 0), eligible))
    return rows


# --- platform health ----------------------------------------------------------------------------


def intake_counts(days: int = 7) -> tuple[list[str], dict[str, dict[str, int]]]:
    """Daily counters (rejections and others) for the last `days` days, by name."""
    today = clock.now().date()
    labels = [(today - timedelta(days=i)).isoformat() for i in range(days)]
    query = select(DailyCounter.day, DailyCounter.name, DailyCounter.count).where(
        DailyCounter.day.in_(labels)
    )
    table: dict[str, dict[str, int]] = {}
    for day, name, n in db.session.execute(query):
        table.setdefault(name, {})[day] = n
    return labels, dict(sorted(table.items()))


def events_received(hours: int = 24) -> dict[str, int]:
    """Pushes received in the last `hours` hours, by outcome.

    Counted here rather than with GROUP BY outcome: planners pick the outcome index for that and
    scan every event ever stored, while this reads one day off the received_at index.
    """
    since = clock.now() - timedelta(hours=hours)
    query = select(InboxEvent.outcome).where(InboxEvent.received_at >= since)
    return dict(Counter(db.session.scalars(query.limit(500_000))))


OPEN_OUTCOMES = ("pending", "processing", "failed", "ignored")


def inbox_totals() -> dict[str, int]:
    """Stored events by outcome: each unfinished outcome off its index, and the total."""
    totals = {
        outcome: db.session.scalar(select(func.count()).where(InboxEvent.outcome == outcome))
        for outcome in OPEN_OUTCOMES
    }
    totals = {outcome: n for outcome, n in totals.items() if n}
    totals["total"] = db.session.scalar(select(func.count(InboxEvent.id)))
    return totals


def last_push() -> InboxEvent | None:
    """The most recent push of any kind."""
    query = select(InboxEvent).order_by(InboxEvent.received_at.desc()).limit(1)
    return db.session.scalar(query)


def alert_history(limit: int = 30) -> list[AuditEntry]:
    """Alerts raised and resolved, and watchdog actions, newest first."""
    actions = ("alert.raised", "alert.resolved", "ticket.start_push_requested")
    query = select(AuditEntry).where(AuditEntry.action.in_(actions))
    return list(db.session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit)))


def all_alerts() -> list[HealthAlert]:
    """Every alert kind ever raised, active ones first."""
    query = select(HealthAlert).order_by(HealthAlert.resolved_at.is_not(None), HealthAlert.kind)
    return list(db.session.scalars(query))


def platform_filter(value: str | None) -> str:
    """A `platform` query parameter as a filter: a platform's component AppID when the
    deployment has several, else "" (every platform's rows)."""
    value = (value or "").strip()
    return value if value in platforms.names() else ""


def job_runs() -> list[JobRun]:
    """The last run of every scheduled job."""
    return list(db.session.scalars(select(JobRun).order_by(JobRun.name)))


def webhook_counts() -> dict[str, int]:
    """Webhook deliveries by status."""
    query = select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
    return dict(db.session.execute(query).all())


def sandbox_release_check() -> dict | None:
    """Dev/sandbox aid: the sandbox's last release-check result, when SANDBOX_CONTROL_URL is set.

    Never used in production paths: without the setting (the default) nothing is called.
    """
    base = current_app.config.get("SANDBOX_CONTROL_URL")
    if not base:
        return None
    try:
        response = requests.get(base.rstrip("/") + "/sandbox/api/state", timeout=2)
        response.raise_for_status()
        return {"ok": True, "result": response.json().get("release_check")}
    except (requests.RequestException, ValueError) as error:
        return {"ok": False, "error": type(error).__name__}
