"""The platform's state in one report, for the staff console and `flask health`."""

from dataclasses import dataclass, field
from datetime import datetime
from functools import cache

from sqlalchemy import func, select, text

from app.extensions import db
from app.models import HealthAlert, InboxEvent, JobRun
from app.models.platform import Platform
from app.services.platform import credentials, health, platforms


@dataclass
class HealthReport:
    """Everything the staff console and `flask health` show."""

    ticket: dict
    component_token: dict
    alerts: list[HealthAlert]
    rejections_today: dict[str, int]
    inbox: dict[str, int]
    jobs: list[JobRun] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.alerts and self.ticket.get("valid", False)


@dataclass
class PlatformCustody:
    """One platform's verify ticket and component token, as the health view shows them."""

    platform: Platform
    ticket: dict
    component_token: dict


def custody_by_platform(rows: list[Platform]) -> list[PlatformCustody]:
    """Each platform's ticket and component token facts (read only, never a value)."""
    found = []
    for row in rows:
        with platforms.using(row.component_appid):
            found.append(
                PlatformCustody(row, credentials.ticket_status(), credentials.token_status())
            )
    return found


def report() -> HealthReport:
    """Collect the current health state (read only)."""
    inbox = dict(
        db.session.execute(
            select(InboxEvent.outcome, func.count()).group_by(InboxEvent.outcome)
        ).all()
    )
    return HealthReport(
        ticket=credentials.ticket_status(),
        component_token=credentials.token_status(),
        alerts=health.active_alerts(),
        rejections_today=health.counters(prefix="rejected:"),
        inbox=inbox,
        jobs=list(db.session.scalars(select(JobRun).order_by(JobRun.name))),
    )


# --- for machines: /readyz and `flask health` (exit 0 ok, 1 warning, 2 critical) --------------

OK, WARNING, CRITICAL = 0, 1, 2
LEVEL_NAMES = {OK: "ok", WARNING: "warning", CRITICAL: "critical"}


def assess(report: HealthReport) -> tuple[int, list[str]]:
    """The monitoring-plugin level of a report and the reasons for it."""
    from app.services.notify import catalog  # notify sits beside platform; no cycle

    reasons: list[tuple[int, str]] = []
    ticket, token = report.ticket, report.component_token
    if not ticket.get("present"):
        reasons.append((CRITICAL, "no verify ticket received yet"))
    elif not ticket.get("valid"):
        reasons.append((CRITICAL, "the verify ticket expired"))
    if not token.get("present"):
        reasons.append((WARNING, "no component access token"))
    elif not token.get("valid"):
        reasons.append((WARNING, "the component access token expired"))
    for alert in report.alerts:
        level = CRITICAL if catalog.severity(alert.kind) == catalog.CRITICAL else WARNING
        reasons.append((level, f"alert {alert.kind}"))
    for run in report.jobs:
        if run.outcome == "error":
            reasons.append((WARNING, f"job {run.name} failed"))
    level = max((lvl for lvl, _ in reasons), default=OK)
    return level, [reason for _, reason in sorted(reasons, key=lambda r: -r[0])]


def _plain(value):
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def as_json(report: HealthReport) -> dict:
    """The report as JSON-ready data (never a secret: the status dicts hold no values)."""
    from app.services.notify import catalog

    level, reasons = assess(report)
    return {
        "status": LEVEL_NAMES[level],
        "exit_code": level,
        "reasons": reasons,
        "ticket": _plain(report.ticket),
        "component_token": _plain(report.component_token),
        "alerts": [_alert_json(alert, catalog) for alert in report.alerts],
        "rejections_today": report.rejections_today,
        "inbox": report.inbox,
        "jobs": [
            {
                "name": run.name,
                "outcome": run.outcome,
                "started_at": _plain(run.started_at),
                "last_success_at": _plain(run.last_success_at),
                "detail": run.detail,
            }
            for run in report.jobs
        ],
    }


def _alert_json(alert: HealthAlert, catalog) -> dict:
    kind = catalog.describe(alert.kind)
    return {
        "kind": alert.kind,
        "severity": kind.severity,
        "title": kind.title_en,
        "since": _plain(alert.first_seen),
        "count": alert.count,
    }


@cache
def migration_heads() -> frozenset[str]:
    """The head revision(s) of the migration scripts shipped with this code."""
    from alembic.script import ScriptDirectory
    from flask import current_app

    directory = current_app.extensions["migrate"].directory
    return frozenset(ScriptDirectory(directory).get_heads())


def readiness() -> tuple[bool, dict]:
    """Ready when the database answers and is migrated to head; credentials only reported."""
    from alembic.migration import MigrationContext

    try:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            current = set(MigrationContext.configure(connection).get_current_heads())
    except Exception:  # unreachable, or no such database: not ready; details stay in logs
        return False, {"status": "not_ready", "database": "unreachable"}
    heads = migration_heads()
    migrated = current == set(heads)
    body = {
        "status": "ready" if migrated else "not_ready",
        "database": "ok",
        "migrations": {"current": sorted(current), "head": sorted(heads), "ok": migrated},
    }
    if migrated:
        report = HealthReport(
            ticket=credentials.ticket_status(),
            component_token=credentials.token_status(),
            alerts=health.active_alerts(),
            rejections_today={},
            inbox={},
        )
        data = as_json(report)
        body.update(
            ticket=data["ticket"],
            component_token=data["component_token"],
            alerts=data["alerts"],
            health=data["status"],
        )
    return migrated, body
