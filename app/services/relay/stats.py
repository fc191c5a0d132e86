"""What the console shows of the relay: counts, timings and errors per route and account.

Never message content: only statuses, counts, durations, status codes and the short error text a
delivery records. Counts cover the retention window (older rows are deleted anyway); percentiles
are computed in SQL (window functions, on SQLite and PostgreSQL) over each route's most recent
answered deliveries, so a busy route costs a bounded sort. A route serving every platform can be
read for one platform's accounts (`component_appid`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import case, func, select

from app.extensions import db
from app.models import Authorizer, RelayDelivery, RelayMessage, RelayRoute
from app.services import clock

# Every status a delivery can have (see RelayDelivery.status), in the order pages show them.
STATUSES = ("delivered", "late", "failed", "dead", "pending", "in_flight")
PERCENTILE_SAMPLE = 5000  # the most recent answered deliveries per route
ERROR_TEXT = 120  # characters of a delivery's last error shown

D = RelayDelivery


@dataclass
class DeliveryError:
    """One recent delivery that went wrong: when, the status code, a short error."""

    delivery_id: int
    at: datetime
    status: str
    status_code: int | None
    error: str
    attempts: int


@dataclass
class RouteStats:
    """One route's deliveries over the retention window."""

    route_id: int
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    p50_ms: int | None = None
    p99_ms: int | None = None
    sampled: int = 0  # answered deliveries the percentiles cover
    last_errors: list[DeliveryError] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class AccountStats:
    """One account's deliveries to one route over the retention window."""

    authorizer_id: int
    component_appid: str  # the account's platform
    appid: str
    account_name: str | None
    route_id: int
    route_name: str
    counts: dict[str, int]
    last_at: datetime | None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def state(self) -> str:
        """The one word a table shows: dead letters first, then errors, a backlog, else ok."""
        if self.counts["dead"]:
            return "dead"
        if self.counts["failed"] or self.counts["late"]:
            return "errors"
        if self.counts["pending"] or self.counts["in_flight"]:
            return "waiting"
        return "ok"


@dataclass
class DeadLetter:
    """A delivery that used up its attempts: the account, the message's type and the last error."""

    delivery_id: int
    authorizer_id: int
    appid: str
    msg_type: str
    create_time: int
    attempts: int
    status_code: int | None
    error: str
    created_at: datetime


def window_start() -> datetime:
    """The oldest delivery the counts include: RELAY_RETENTION_HOURS ago."""
    return clock.now() - timedelta(hours=current_app.config["RELAY_RETENTION_HOURS"])


def route_stats(
    route_ids=None, *, last_errors: int = 0, component_appid: str | None = None
) -> dict[int, RouteStats]:
    """Counts per status and p50/p99 reply times of each route (all routes when none are named);
    with `component_appid`, of that platform's accounts' deliveries only."""
    if route_ids is None:
        route_ids = db.session.scalars(select(RelayRoute.id)).all()
    stats = {route_id: RouteStats(route_id) for route_id in route_ids}
    if not stats:
        return stats
    since = window_start()
    counts = _on_platform(
        select(D.route_id, D.status, func.count())
        .where(D.route_id.in_(stats), D.created_at >= since)
        .group_by(D.route_id, D.status),
        component_appid,
    )
    for route_id, status, n in db.session.execute(counts):
        stats[route_id].counts[status] = n
    for route_id, route in stats.items():
        if route.total:
            route.p50_ms, route.p99_ms, route.sampled = _percentiles(
                route_id, since, component_appid
            )
            if last_errors:
                route.last_errors = recent_errors(route_id, limit=last_errors)
    return stats


def _on_platform(query, component_appid: str | None):
    """`query` over deliveries, narrowed to one platform's accounts (unchanged for None)."""
    if component_appid is None:
        return query
    return query.join(Authorizer, Authorizer.id == D.authorizer_id).where(
        Authorizer.component_appid == component_appid
    )


def _percentiles(
    route_id: int, since: datetime, component_appid: str | None = None
) -> tuple[int | None, int | None, int]:
    """Nearest-rank p50 and p99 of the route's most recent answered deliveries, in one query."""
    recent = (
        _on_platform(
            select(D.duration_ms.label("ms")).where(
                D.route_id == route_id, D.created_at >= since, D.duration_ms.is_not(None)
            ),
            component_appid,
        )
        .order_by(D.id.desc())
        .limit(PERCENTILE_SAMPLE)
        .subquery()
    )
    ranked = select(
        recent.c.ms,
        func.row_number().over(order_by=recent.c.ms).label("rank"),
        func.count().over().label("n"),
    ).subquery()

    def nearest_rank(percent: int):
        # The smallest duration whose rank reaches percent% of the sample (integer arithmetic).
        return func.min(case((ranked.c.rank * 100 >= percent * ranked.c.n, ranked.c.ms)))

    p50, p99, n = db.session.execute(select(nearest_rank(50), nearest_rank(99), func.count())).one()
    return p50, p99, n


def recent_errors(route_id: int, *, limit: int = 5) -> list[DeliveryError]:
    """The route's latest deliveries that recorded an error or a refused status code."""
    query = (
        select(D.id, D.created_at, D.status, D.last_status_code, D.last_error, D.attempts)
        .where(
            D.route_id == route_id,
            (D.last_error.is_not(None)) | (D.last_status_code >= 400),
        )
        .order_by(D.id.desc())
        .limit(limit)
    )
    return [
        DeliveryError(
            delivery_id=row.id,
            at=row.created_at,
            status=row.status,
            status_code=row.last_status_code,
            error=(row.last_error or "")[:ERROR_TEXT],
            attempts=row.attempts,
        )
        for row in db.session.execute(query)
    ]


def account_stats(
    *, route_id: int | None = None, authorizer_id: int | None = None, limit: int = 50
) -> list[AccountStats]:
    """Counts per (account, route) over the window, busiest first: for a route or an account."""
    total = func.count().label("total")
    names = (Authorizer.component_appid, Authorizer.appid, Authorizer.nick_name, RelayRoute.name)
    query = (
        select(
            D.authorizer_id,
            D.route_id,
            *names,
            *(func.sum(case((D.status == s, 1), else_=0)).label(s) for s in STATUSES),
            func.max(D.created_at).label("last_at"),
            total,
        )
        .join(Authorizer, Authorizer.id == D.authorizer_id)
        .join(RelayRoute, RelayRoute.id == D.route_id)
        .where(D.created_at >= window_start())
        .group_by(D.authorizer_id, D.route_id, *names)
        .order_by(total.desc(), D.authorizer_id, D.route_id)
        .limit(limit)
    )
    if route_id is not None:
        query = query.where(D.route_id == route_id)
    if authorizer_id is not None:
        query = query.where(D.authorizer_id == authorizer_id)
    return [
        AccountStats(
            authorizer_id=row.authorizer_id,
            component_appid=row.component_appid,
            appid=row.appid,
            account_name=row.nick_name,
            route_id=row.route_id,
            route_name=row.name,
            counts={s: int(getattr(row, s) or 0) for s in STATUSES},
            last_at=row.last_at,
        )
        for row in db.session.execute(query)
    ]


def dead_letters(route_id: int, *, before: int | None = None, limit: int = 50) -> list[DeadLetter]:
    """A route's dead deliveries, newest first (`before` a delivery id, for the next page)."""
    query = (
        select(
            D.id,
            D.authorizer_id,
            Authorizer.appid,
            RelayMessage.msg_type,
            D.create_time,
            D.attempts,
            D.last_status_code,
            D.last_error,
            D.created_at,
        )
        .join(RelayMessage, RelayMessage.id == D.message_id)
        .join(Authorizer, Authorizer.id == D.authorizer_id)
        .where(D.route_id == route_id, D.status == "dead")
        .order_by(D.id.desc())
        .limit(limit)
    )
    if before is not None:
        query = query.where(D.id < before)
    return [
        DeadLetter(
            delivery_id=row.id,
            authorizer_id=row.authorizer_id,
            appid=row.appid,
            msg_type=row.msg_type,
            create_time=row.create_time,
            attempts=row.attempts,
            status_code=row.last_status_code,
            error=(row.last_error or "")[:ERROR_TEXT],
            created_at=row.created_at,
        )
        for row in db.session.execute(query)
    ]
