"""Async relay deliveries: a durable outbox, in CreateTime order per (route, account), retried.

The rules. A group is one route and one account. Only its oldest `pending` delivery (by the
message's CreateTime, then message id), the head, is ever sent, and only while no other delivery
of the group is in flight: one in flight per group. A 2xx answer delivers it (the body is
ignored: async replies go nowhere); anything else is retried after 30 s, doubling to at most
30 min, so the 8th and last attempt (RELAY_MAX_ATTEMPTS) comes about an hour after the first; then
the delivery is `dead` and the group's next message goes (a dead head never blocks its group).
A paused route holds its deliveries (no attempts); a deleted route takes them along (FK cascade).
`replay` and `replay_dead` put dead deliveries back in line.

How work is taken, safely across processes and hosts. A drain claims heads in batches: one
guarded UPDATE leases up to N due heads of free groups (`lease_until`), their requests go out
concurrently (RELAY_OUTBOX_CONCURRENCY threads, one keep-alive requests.Session each), and the
outcomes are written in batches, each fenced by the lease it was claimed with. Deliveries waiting
behind their group's head are parked (`next_attempt_at` = PARKED) so that a long backlog behind
a dead target costs nothing per claim; finishing a head un-parks the next one. Claims and outcome
writes of all processes take turns on one transaction-level PostgreSQL advisory lock (SQLite has
a single writer anyway): each sees the others' leases, so a message that arrives late, older than
the one in flight, waits its turn too. A claim is a few milliseconds for a whole batch.

How draining is started (the choice). Two paths run the same `drain`:
- `wake()`: called after the intake committed async deliveries (registered below with
  `inbound.on_async_stored`); it signals this process's drainer thread (started on first use,
  gone after a minute idle), which delivers within milliseconds wherever the message arrived:
  `make run`'s single server as well as every gunicorn worker on every host.
  RELAY_OUTBOX_WAKE=false turns it off (the tests do, unless they test it).
- the `relay_outbox` job (`flask worker` or RQ, every 5 s): retries as they come due, held
  deliveries once their route is resumed, and whatever a crashed process left (its leases expire).
No extra process is needed, and any number of each may run.

Payloads and replies are never logged: only ids, counts and exception type names.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import requests
from flask import Flask, current_app, has_app_context
from sqlalchemy import and_, bindparam, exists, func, literal_column, or_, select, update
from sqlalchemy.orm import aliased

from app import metrics
from app.extensions import db
from app.models import Authorizer, RelayDelivery, RelayMessage, RelayRoute, User
from app.services import DomainError, audit, clock
from app.services.relay import formats, inbound, transport
from app.wechat.errors import MalformedMessage
from app.wechat.events import parse_message

log = logging.getLogger(__name__)

BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_MAX = timedelta(minutes=30)
# `next_attempt_at` of a delivery waiting behind its group's head: never due by itself.
PARKED = datetime(9000, 1, 1, tzinfo=UTC)
# Inline, so that PostgreSQL can match a partial index on pending rows with any plan.
PENDING = literal_column("'pending'")
# Claims and outcome writes take turns on this PostgreSQL advisory lock ("relayobx").
LOCK_KEY = int.from_bytes(b"relayobx", "big")
DRAIN_LIMIT = 5000  # deliveries attempted per job run (the next run goes on)
IDLE_SECONDS = 60.0  # a woken drainer thread ends after this long without work
WRITE_EVERY = 0.05  # seconds: outcomes are written in batches at least this often
DRAIN_CHUNKS = 8  # of an answer's body, read (8 KiB each) and ignored


class NotDead(DomainError):
    """Only a dead async delivery can be replayed."""

    code = "relay_delivery_not_dead"


# --- the job and the low-latency path -----------------------------------------------------------


def deliver_due(*, limit: int = DRAIN_LIMIT, session: requests.Session | None = None) -> int:
    """Send due deliveries until none is due or `limit` were attempted; returns how many were
    delivered. `session` (tests) replaces the per-thread HTTP sessions."""
    return drain(limit=limit, session=session).delivered


def wake() -> None:
    """Deliver what was just stored soon: signal this process's drainer thread.

    Call it after the commit that stored the deliveries. A no-op outside an app context or with
    RELAY_OUTBOX_WAKE off; never raises into the caller's request."""
    if not has_app_context() or not current_app.config.get("RELAY_OUTBOX_WAKE"):
        return
    app = current_app._get_current_object()
    with _drainers_lock:
        drainer = app.extensions.get("relay.outbox.drainer")
        if drainer is None:
            drainer = app.extensions["relay.outbox.drainer"] = _Drainer(app)
        drainer.wake()


class _Drainer:
    """One thread per process (and app) that drains whenever woken, then waits."""

    def __init__(self, app: Flask):
        self.app = app
        self.event = threading.Event()
        self.thread: threading.Thread | None = None

    def wake(self) -> None:  # called under _drainers_lock
        self.event.set()
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(target=self._run, name="relay-drainer", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        while True:
            if not self.event.wait(IDLE_SECONDS):
                with _drainers_lock:
                    if not self.event.is_set():  # no wake slipped in: end (a wake restarts us)
                        self.thread = None
                        return
            self.event.clear()
            with self.app.app_context():
                try:
                    result = drain(limit=DRAIN_LIMIT)
                    if result.attempted >= DRAIN_LIMIT:
                        self.event.set()  # more is due: go on
                except Exception as exc:  # the job retries; keep the thread
                    db.session.rollback()
                    log.warning("relay outbox drain failed: %s", type(exc).__name__)
                finally:
                    db.session.remove()


_drainers_lock = threading.Lock()
inbound.on_async_stored(wake)


# --- draining ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DrainResult:
    attempted: int
    delivered: int


@dataclass(frozen=True)
class _Target:
    """What a request to a route needs (build_request reads these), detached from the ORM."""

    url: str
    format: str
    token: str | None
    secret: str | None


@dataclass(frozen=True)
class _Claim:
    delivery_id: int
    route_id: int
    authorizer_id: int
    create_time: int
    message_id: int
    attempts: int
    lease_until: datetime
    request: formats.Request | None  # None: the stored message could not be read


@dataclass(frozen=True)
class _Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def drain(*, limit: int = DRAIN_LIMIT, session: requests.Session | None = None) -> DrainResult:
    """Claim, send and record until nothing is due (or `limit` attempts), keeping the senders busy:
    outcomes are written as they come in, and each finished head lets its group's next one go."""
    config = current_app.config
    concurrency = max(1, int(config["RELAY_OUTBOX_CONCURRENCY"]))
    timeout = float(config["RELAY_DELIVERY_TIMEOUT"])
    capacity = 2 * concurrency  # claimed at once: a queued request waits one round at most
    senders = _executor(concurrency)
    in_flight: dict[Future, _Claim] = {}
    attempted = delivered = 0
    may_claim = True
    while True:
        room = min(capacity - len(in_flight), limit - attempted)
        if may_claim and room > 0 and (not in_flight or room >= concurrency // 2):
            claims = _claim(room)
            may_claim = len(claims) == room  # a short claim: nothing else is due right now
            for claim in claims:
                in_flight[senders.submit(_send, claim.request, timeout, session)] = claim
            attempted += len(claims)
        if not in_flight:
            return DrainResult(attempted, delivered)
        done, _ = wait(in_flight, timeout=WRITE_EVERY, return_when=ALL_COMPLETED)
        if not done:
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
        delivered += _record([(in_flight.pop(future), future.result()) for future in done])
        may_claim = True


def _claim(limit: int) -> list[_Claim]:
    """Lease up to `limit` due heads of free groups, and park what waits behind a head."""
    now = clock.now()
    lease_until = now + _lease()
    candidate = aliased(RelayDelivery, name="candidate")
    other = aliased(RelayDelivery, name="other")
    same_group = (
        other.route_id == candidate.route_id,
        other.authorizer_id == candidate.authorizer_id,
        other.status == PENDING,
        other.id != candidate.id,
    )
    older = or_(
        other.create_time < candidate.create_time,
        and_(other.create_time == candidate.create_time, other.message_id < candidate.message_id),
    )
    due = (
        candidate.status == PENDING,
        candidate.next_attempt_at <= now,
        or_(candidate.lease_until.is_(None), candidate.lease_until < now),
    )
    behind_a_head = (
        select(candidate.id)
        .where(*due, exists().where(*same_group, older))
        .order_by(candidate.next_attempt_at, candidate.id)
        .limit(4 * limit)
    )
    free_heads = (
        select(candidate.id)
        .join(RelayRoute, RelayRoute.id == candidate.route_id)
        .where(
            *due,
            RelayRoute.paused.is_(False),
            # No older pending message, and nothing of the group in flight.
            ~exists().where(*same_group, or_(older, other.lease_until >= now)),
        )
        .order_by(candidate.next_attempt_at, candidate.id)
        .limit(limit)
    )
    # Each statement is whole on its own (SQLite: one writer; PostgreSQL: the lock).
    with taking_turns():
        db.session.execute(
            update(RelayDelivery)
            .where(RelayDelivery.id.in_(behind_a_head.scalar_subquery()))
            .values(next_attempt_at=PARKED)
            .execution_options(synchronize_session=False)
        )
        ids = db.session.scalars(
            update(RelayDelivery)
            .where(RelayDelivery.id.in_(free_heads.scalar_subquery()))
            .values(lease_until=lease_until)
            .returning(RelayDelivery.id)
            .execution_options(synchronize_session=False)
        ).all()
    db.session.commit()
    if not ids:
        return []
    try:
        return _requests_for(ids, lease_until)
    finally:
        db.session.commit()  # hold no transaction (or SQLite read snapshot) while sending


def _requests_for(ids: list[int], lease_until: datetime) -> list[_Claim]:
    """The request each claimed delivery sends, built from its route, message and account."""
    rows = db.session.execute(
        select(
            RelayDelivery.id,
            RelayDelivery.route_id,
            RelayDelivery.authorizer_id,
            RelayDelivery.create_time,
            RelayDelivery.message_id,
            RelayDelivery.attempts,
            RelayMessage.payload,
            RelayMessage.received_at,
            Authorizer.appid,
            Authorizer.merchant_id,
        )
        .join(RelayMessage, RelayMessage.id == RelayDelivery.message_id)
        .join(Authorizer, Authorizer.id == RelayDelivery.authorizer_id)
        .where(RelayDelivery.id.in_(ids))
        .order_by(RelayDelivery.id)
    ).all()
    targets = {
        route.id: _Target(route.url, route.format, route.token, route.secret)
        for route in db.session.scalars(
            select(RelayRoute).where(RelayRoute.id.in_({row.route_id for row in rows}))
        )
    }
    component_appid = current_app.config["WECHAT_COMPONENT_APPID"]
    timestamp = int(clock.now().timestamp())
    claims = []
    for row in rows:
        try:
            fields = parse_message(row.payload).fields
        except MalformedMessage:
            request = None  # stored by us, so never expected; retried, then dead
        else:
            outgoing = formats.Outgoing(
                message_id=row.message_id,
                delivery_id=row.id,
                component_appid=component_appid,
                authorizer_appid=row.appid,
                merchant_id=row.merchant_id,
                received_at=row.received_at,
                xml=row.payload,
                fields=fields,
            )
            target = targets.get(row.route_id)  # None: the route was deleted just now
            request = target and formats.build_request(target, outgoing, timestamp=timestamp)
        claims.append(
            _Claim(
                row.id,
                row.route_id,
                row.authorizer_id,
                row.create_time,
                row.message_id,
                row.attempts,
                lease_until,
                request,
            )
        )
    return claims


def _send(
    request: formats.Request | None, timeout: float, session: requests.Session | None
) -> _Outcome:
    """One attempt (in a sender thread, no database): any 2xx delivers; the body is ignored."""
    if request is None:
        return _Outcome(None, "unreadable message", 0)
    http = session or transport.session()
    started = time.perf_counter()
    try:
        with http.post(
            request.url,
            data=request.body,
            headers=request.headers,
            timeout=timeout,
            allow_redirects=False,  # a redirect is not a delivery
            stream=True,
        ) as response:
            status_code, error = response.status_code, None
            # Read a short body so the connection is kept alive; a long one is cut off.
            for _ in zip(range(DRAIN_CHUNKS), response.iter_content(8192), strict=False):
                pass
    except requests.RequestException as exc:
        status_code, error = None, transport.describe(exc)
    return _Outcome(status_code, error, int((time.perf_counter() - started) * 1000))


def _record(results: list[tuple[_Claim, _Outcome]]) -> int:
    """Write a batch of outcomes (each only while its lease is ours); returns how many delivered."""
    if not results:
        return 0
    now = clock.now()
    max_attempts = int(current_app.config["RELAY_MAX_ATTEMPTS"])
    rows, finished, counts = [], [], {"delivered": 0, "retry": 0, "dead": 0}
    for claim, outcome in results:
        attempts = claim.attempts + 1
        if outcome.ok:
            status, next_attempt_at = "delivered", now
        elif attempts >= max_attempts:
            status, next_attempt_at = "dead", now
        else:
            status, next_attempt_at = "pending", now + backoff(attempts)
        counts["retry" if status == "pending" else status] += 1
        if status != "pending":
            finished.append(claim)
        rows.append(
            {
                "b_id": claim.delivery_id,
                "b_lease": claim.lease_until,
                "b_status": status,
                "b_attempts": attempts,
                "b_next": next_attempt_at,
                "b_code": outcome.status_code,
                "b_error": outcome.error,
                "b_ms": outcome.duration_ms,
                "b_delivered_at": now if status == "delivered" else None,
            }
        )
    table = RelayDelivery.__table__
    with taking_turns():
        db.session.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"), table.c.lease_until == bindparam("b_lease"))
            .values(
                status=bindparam("b_status"),
                attempts=bindparam("b_attempts"),
                next_attempt_at=bindparam("b_next"),
                lease_until=None,
                last_status_code=bindparam("b_code"),
                last_error=bindparam("b_error"),
                duration_ms=bindparam("b_ms"),
                delivered_at=bindparam("b_delivered_at"),
            ),
            rows,
        )
        _release_next(finished, now)
    db.session.commit()
    for status, count in counts.items():
        if count:
            metrics.RELAY_DELIVERIES.labels(mode="async", status=status).inc(count)
    return counts["delivered"]


def _release_next(finished: list[_Claim], now: datetime) -> None:
    """Un-park the message after each finished head (harmless if it is not the new head: the
    next claim parks it again; what matters is that a group's oldest pending is never parked)."""
    if not finished:
        return
    table = RelayDelivery.__table__
    after = table.alias("successor")
    successor = (
        select(after.c.id)
        .where(
            after.c.route_id == bindparam("p_route"),
            after.c.authorizer_id == bindparam("p_account"),
            after.c.status == PENDING,
            or_(
                after.c.create_time > bindparam("p_time"),
                and_(
                    after.c.create_time == bindparam("p_time"),
                    after.c.message_id > bindparam("p_message"),
                ),
            ),
        )
        .order_by(after.c.create_time, after.c.message_id)
        .limit(1)
        .scalar_subquery()
    )
    db.session.execute(
        update(table)
        .where(table.c.id == successor, table.c.next_attempt_at == PARKED)
        .values(next_attempt_at=bindparam("p_now")),
        [
            {
                "p_route": claim.route_id,
                "p_account": claim.authorizer_id,
                "p_time": claim.create_time,
                "p_message": claim.message_id,
                "p_now": now,
            }
            for claim in finished
        ],
    )


def release_groups(groups: Iterable[tuple[int, int]]) -> None:
    """Un-park the oldest pending delivery of each (route_id, authorizer_id) group: for callers
    that delete pending rows (retention), which may have taken a group's head. Call it while
    `taking_turns()` in the same transaction as the deletion."""
    table = RelayDelivery.__table__
    oldest = table.alias("oldest")
    head = (
        select(oldest.c.id)
        .where(
            oldest.c.route_id == bindparam("p_route"),
            oldest.c.authorizer_id == bindparam("p_account"),
            oldest.c.status == PENDING,
        )
        .order_by(oldest.c.create_time, oldest.c.message_id)
        .limit(1)
        .scalar_subquery()
    )
    params = [
        {"p_route": route, "p_account": account, "p_now": clock.now()} for route, account in groups
    ]
    if params:
        db.session.execute(
            update(table)
            .where(table.c.id == head, table.c.next_attempt_at == PARKED)
            .values(next_attempt_at=bindparam("p_now")),
            params,
        )


@contextmanager
def taking_turns():
    """Serialize with every other process's claims and outcome writes until the commit."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(select(func.pg_advisory_xact_lock(LOCK_KEY)))
    yield


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: 30 s, 1, 2, 4, 8, 16, then 30 min."""
    return min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (attempts - 1))


def _lease() -> timedelta:
    # A claimed delivery waits for one round of sends at most, then takes its own timeout.
    return timedelta(seconds=3 * float(current_app.config["RELAY_DELIVERY_TIMEOUT"]) + 30)


_executors: dict[int, ThreadPoolExecutor] = {}
_executors_lock = threading.Lock()


def _executor(concurrency: int) -> ThreadPoolExecutor:
    """This process's sender threads (created after any fork, on first use)."""
    with _executors_lock:
        executor = _executors.get(concurrency)
        if executor is None:
            executor = _executors[concurrency] = ThreadPoolExecutor(
                max_workers=concurrency, thread_name_prefix="relay-sender"
            )
        return executor


# --- replay ------------------------------------------------------------------------------------


def replay(delivery: RelayDelivery, *, actor: User | str | None = None) -> None:
    """Put a dead async delivery back in line (attempts from zero); audited, no content."""
    if delivery.mode != "async" or delivery.status != "dead":
        raise NotDead()
    _back_in_line(delivery)
    audit.record(
        "relay.delivery_replayed",
        actor=actor,
        target_type="relay_delivery",
        target_id=delivery.id,
        route_id=delivery.route_id,
    )
    db.session.commit()
    wake()


def replay_dead(*, route_id: int | None = None, actor: User | str | None = None) -> int:
    """Replay every dead async delivery (of one route); returns how many went back in line."""
    where = [RelayDelivery.mode == "async", RelayDelivery.status == "dead"]
    if route_id is not None:
        where.append(RelayDelivery.route_id == route_id)
    count = db.session.execute(
        update(RelayDelivery)
        .where(*where)
        .values(status="pending", attempts=0, next_attempt_at=clock.now(), lease_until=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    if count:
        audit.record(
            "relay.dead_replayed",
            actor=actor,
            target_type="relay_route" if route_id is not None else None,
            target_id=route_id,
            count=count,
        )
    db.session.commit()
    if count:
        wake()
    return count


def _back_in_line(delivery: RelayDelivery) -> None:
    delivery.status = "pending"
    delivery.attempts = 0
    delivery.next_attempt_at = clock.now()
    delivery.lease_until = None
