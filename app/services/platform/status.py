"""The platform's state in one report, for the staff console and `flask health`."""

from dataclasses import dataclass, field

from sqlalchemy import func, select

from app.extensions import db
from app.models import HealthAlert, InboxEvent, JobRun
from app.services.platform import credentials, health


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
