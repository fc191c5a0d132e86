"""Health of the platform credentials: alerts, rejection counters and the report staff read."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import metrics
from app.current_platform import platform_detail
from app.extensions import db
from app.models import AuditEntry, DailyCounter, HealthAlert, JobRun
from app.services import clock
from app.services.platform import platforms

# Alert kinds (stable identifiers; the console translates them).
TICKET_SILENT = "ticket_push_silent"
TICKET_REJECTED = "ticket_rejected"
NO_VALID_TICKET = "no_valid_ticket"
FOREIGN_REFRESH = "foreign_refresh"
QUOTA_EXCEEDED = "quota_exceeded"
TOKEN_REFRESH_FAILED = "component_token_refresh_failed"
INBOX_FAILURES = "inbox_failures"
IP_NOT_WHITELISTED = "ip_not_whitelisted"
INVALID_APPSECRET = "invalid_appsecret"

# WeChat errcodes that name their own cause (matched by code, whatever the error class).
ERRCODE_ALERTS = {
    61004: IP_NOT_WHITELISTED,  # access clientip is not registered
    45009: QUOTA_EXCEEDED,  # reach max api daily quota limit
    40125: INVALID_APPSECRET,  # invalid appsecret
    41004: INVALID_APPSECRET,  # appsecret missing
}


@contextmanager
def own_transaction():
    """A session of its own, committed on exit: survives the caller's rollback."""
    session = Session(db.engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def audit(session: Session, action: str, **details) -> None:
    """Append an audit entry through `session` (never with secret values)."""
    session.execute(
        insert(AuditEntry).values(at=clock.now(), action=action, actor="system", details=details)
    )


def _of_platform(kind: str) -> list:
    return [HealthAlert.kind == kind, HealthAlert.component_appid == platforms.current_appid()]


def raise_alert(kind: str, **details) -> bool:
    """Record that `kind` is happening now on the current platform; returns True when it was
    not already active."""
    now = clock.now()
    with own_transaction() as session:
        current = session.scalar(select(HealthAlert).where(*_of_platform(kind)))
        if current is None:
            appid = platforms.current_appid()
            try:
                with session.begin_nested():
                    session.add(
                        HealthAlert(
                            kind=kind,
                            component_appid=appid,
                            first_seen=now,
                            last_seen=now,
                            details=details,
                        )
                    )
            except IntegrityError:  # another process raised it at the same moment
                return raise_alert(kind, **details)
            audit(session, "alert.raised", kind=kind, **platform_detail(), **details)
            return True
        was_active = current.resolved_at is None
        current.last_seen, current.count = now, current.count + 1
        current.details = {**(current.details or {}), **details}
        if not was_active:
            current.first_seen, current.resolved_at, current.count = now, None, 1
            audit(session, "alert.raised", kind=kind, **platform_detail(), **details)
        return not was_active


def resolve_alert(kind: str, *, session: Session | None = None) -> bool:
    """Mark the current platform's `kind` resolved (in `session`'s transaction if given);
    True when it was active."""
    if session is not None:
        return _resolve(session, kind)
    with own_transaction() as own:
        return _resolve(own, kind)


def _resolve(session: Session, kind: str) -> bool:
    active = [*_of_platform(kind), HealthAlert.resolved_at.is_(None)]
    # Most calls find nothing to resolve: a read first keeps the write lock out of it (and
    # runs on the connection: the ticket push path calls this every time).
    if session.connection().execute(select(HealthAlert.id).where(*active)).first() is None:
        return False
    done = session.execute(
        update(HealthAlert)
        .where(*active)
        .values(resolved_at=clock.now())
        .execution_options(synchronize_session=False)
    )
    if done.rowcount:
        audit(session, "alert.resolved", kind=kind, **platform_detail())
    return bool(done.rowcount)


def active_alerts() -> list[HealthAlert]:
    """Unresolved alerts, most recent first."""
    query = select(HealthAlert).where(HealthAlert.resolved_at.is_(None))
    return list(db.session.scalars(query.order_by(HealthAlert.last_seen.desc())))


def alert_details(kind: str) -> dict:
    """The details of the current platform's alert (active or not), {} when it never
    happened."""
    alert = db.session.scalar(select(HealthAlert).where(*_of_platform(kind)))
    return dict(alert.details or {}) if alert else {}


def count(name: str, amount: int = 1, *, at: datetime | None = None) -> None:
    """Add to today's counter `name` (its own transaction: counts survive rejections)."""
    day = (at or clock.now()).strftime("%Y-%m-%d")
    if name.startswith("rejected:"):  # rejected:events:bad_signature -> reason events:...
        metrics.PUSHES_REJECTED.labels(reason=name.removeprefix("rejected:")).inc(amount)
    bump = update(DailyCounter).where(DailyCounter.day == day, DailyCounter.name == name)
    with own_transaction() as session:
        if session.execute(bump.values(count=DailyCounter.count + amount)).rowcount:
            return
        try:
            with session.begin_nested():
                session.add(DailyCounter(day=day, name=name, count=amount))
        except IntegrityError:  # created concurrently; add to it instead
            session.execute(bump.values(count=DailyCounter.count + amount))


def counters(day: str | None = None, prefix: str = "") -> dict[str, int]:
    """Counter values of one UTC day (today by default), optionally by name prefix."""
    day = day or clock.now().strftime("%Y-%m-%d")
    query = select(DailyCounter.name, DailyCounter.count).where(DailyCounter.day == day)
    if prefix:
        query = query.where(DailyCounter.name.startswith(prefix))
    return dict(db.session.execute(query).all())


def claim_slot(name: str, min_interval: int) -> bool:
    """Atomically start run `name` unless one started less than `min_interval` s ago (any host)."""
    now = clock.now()
    due = or_(
        JobRun.started_at.is_(None), JobRun.started_at <= now - timedelta(seconds=min_interval)
    )
    with own_transaction() as session:
        if session.scalar(select(JobRun.id).where(JobRun.name == name)) is None:
            try:
                with session.begin_nested():
                    session.add(JobRun(name=name))
            except IntegrityError:
                pass
        claimed = session.execute(
            update(JobRun)
            .where(JobRun.name == name, due)
            .values(started_at=now, finished_at=None, outcome="running", runs=JobRun.runs + 1)
            .returning(JobRun.id)
        ).first()
    return claimed is not None


def finish_slot(name: str, outcome: str, detail: str | None = None) -> None:
    """Record how run `name` ended."""
    values = {"finished_at": clock.now(), "outcome": outcome, "detail": detail}
    if outcome != "ok":
        values["failures"] = JobRun.failures + 1
    else:
        values["last_success_at"] = values["finished_at"]
    with own_transaction() as session:
        session.execute(update(JobRun).where(JobRun.name == name).values(**values))
