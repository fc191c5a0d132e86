"""Async relay deliveries: a durable outbox, in CreateTime order per (route, account), retried.

The rules. A group is one route and one account. Only its oldest `pending` delivery (by the
message's CreateTime, then message id), the head, is ever sent, and only while no other delivery
of the group is in flight: one in flight per group. A 2xx answer delivers it (the body is
ignored: async replies go nowhere); anything else is retried after 30 s, doubling to at most
30 min, so the 8th and last attempt (RELAY_MAX_ATTEMPTS) comes about an hour after the first; then
the delivery is `dead` and the group's next message goes (a dead head never blocks its group).
A paused route holds its deliveries (no attempts); a deleted route takes them along (FK cascade).
`replay` and `replay_dead` put dead deliveries back in line.

How work is taken, safely across processes and hosts. A drain works in turns, one transaction
each: it writes the outcomes that came in since its last turn (each fenced by the lease it was
claimed with), then one guarded UPDATE leases up to N due heads of free groups (`lease_until`).
Their requests go out concurrently (RELAY_OUTBOX_CONCURRENCY threads sharing urllib3 keep-alive
connections, see transport.py) while the next turn is taken.
Deliveries waiting behind their group's head are parked (`next_attempt_at` = PARKED), so that a
long backlog behind a dead target costs nothing per claim; finishing a head un-parks the next one.
The drains of all processes take turns on one transaction-level PostgreSQL advisory lock (SQLite
has a single writer anyway): each sees the others' leases, so even a message that arrives late,
older than the one in flight, waits its turn. A turn takes a few milliseconds for a whole batch.

Throughput grows with the number of groups that have work; within one group, messages go one
after the other (each waits for the previous outcome to be written).

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

import functools
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import urllib3
from flask import Flask, current_app, has_app_context
from sqlalchemy import (
    BigInteger,
    Integer,
    Text,
    Update,
    bindparam,
    case,
    column,
    exists,
    func,
    literal_column,
    or_,
    select,
    tuple_,
    type_coerce,
    update,
    values,
)
from sqlalchemy.orm import aliased

from app import metrics, vault
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
# Deliveries claimed per sender thread: a few queued behind each request keep the threads busy
# while outcomes are written and the next batch is claimed.
CLAIMED_ROUNDS = 8
PARK_BATCH = 1000  # waiting deliveries parked per claim
MAX_ANSWER_BYTES = 64 * 1024  # of an answer's body, read (and ignored) to keep its connection


class NotDead(DomainError):
    """Only a dead async delivery can be replayed."""

    code = "relay_delivery_not_dead"


# --- the job and the low-latency path -----------------------------------------------------------


def deliver_due(*, limit: int = DRAIN_LIMIT, session: urllib3.PoolManager | None = None) -> int:
    """Send due deliveries until none is due or `limit` were attempted; returns how many were
    delivered. `session`: the connection pool to send through (default: this process's)."""
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


def drain(*, limit: int = DRAIN_LIMIT, session: urllib3.PoolManager | None = None) -> DrainResult:
    """Claim, send and record until nothing is due (or `limit` attempts), keeping the senders busy:
    outcomes are written as they come in (all that finished meanwhile in one transaction), and
    each finished head lets its group's next message go at the next claim."""
    config = current_app.config
    concurrency = max(1, int(config["RELAY_OUTBOX_CONCURRENCY"]))
    timeout = float(config["RELAY_DELIVERY_TIMEOUT"])
    senders = _executor(concurrency)
    http = session or transport.pool(concurrency)
    in_flight: dict[Future, _Claim] = {}
    attempted = delivered = 0
    finished: list[tuple[_Claim, _Outcome]] = []
    may_claim = True
    while True:
        room = min(CLAIMED_ROUNDS * concurrency - len(in_flight), limit - attempted)
        room = max(0, room) if may_claim else 0
        claims, just_delivered = _turn(finished, room)
        delivered += just_delivered
        may_claim = room > 0 and len(claims) == room  # a short claim: nothing else is due now
        for claim in claims:
            in_flight[senders.submit(_send, claim.request, timeout, http)] = claim
        attempted += len(claims)
        if not in_flight:
            return DrainResult(attempted, delivered)
        done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
        finished = [(in_flight.pop(future), future.result()) for future in done]
        may_claim = True  # a finished head lets its group's next message go


def _turn(results: list[tuple[_Claim, _Outcome]], limit: int) -> tuple[list[_Claim], int]:
    """One transaction, taking turns with every other process: write the outcomes that came in,
    then lease up to `limit` more. Returns the new claims and how many outcomes delivered."""
    if not results and limit <= 0:
        return [], 0
    with taking_turns():
        counts = _record(results)
        claims = _claim(limit) if limit > 0 else []
    db.session.commit()  # hold no transaction (or SQLite read snapshot) while sending
    for status, count in counts.items():
        if count:
            metrics.RELAY_DELIVERIES.labels(mode="async", status=status).inc(count)
    return claims, counts["delivered"]


@dataclass(frozen=True)
class _Statements:
    lease: Update  # binds now, lease_until, n; returns the leased ids
    park: Update  # binds now, n
    release_oldest: Update  # executemany: p_route, p_account, p_now


@functools.cache
def _statements() -> _Statements:
    """The outbox's statements, built once per process (they run many times a second)."""
    candidate = aliased(RelayDelivery, name="candidate")
    other = aliased(RelayDelivery, name="other")
    now = bindparam("now")
    same_group = (
        other.route_id == candidate.route_id,
        other.authorizer_id == candidate.authorizer_id,
        other.status == PENDING,
        other.id != candidate.id,
    )
    older = _order(other) < _order(candidate)
    due = (
        candidate.status == PENDING,
        candidate.next_attempt_at <= now,
        or_(candidate.lease_until.is_(None), candidate.lease_until < now),
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
        .limit(bindparam("n", type_=Integer))
    )
    behind_a_head = (
        select(candidate.id)
        .where(*due, exists().where(*same_group, older))
        .order_by(candidate.next_attempt_at, candidate.id)
        .limit(bindparam("n", type_=Integer))
    )
    table = RelayDelivery.__table__
    oldest = aliased(RelayDelivery, name="oldest")
    head = (
        select(oldest.id)
        .where(
            oldest.route_id == bindparam("p_route"),
            oldest.authorizer_id == bindparam("p_account"),
            oldest.status == PENDING,
        )
        .order_by(oldest.create_time, oldest.message_id)
        .limit(1)
        .scalar_subquery()
    )
    unpark = {"next_attempt_at": bindparam("p_now")}
    return _Statements(
        lease=update(RelayDelivery)
        .where(RelayDelivery.id.in_(free_heads.scalar_subquery()))
        .values(lease_until=bindparam("lease_until"))
        .returning(RelayDelivery.id)
        .execution_options(synchronize_session=False),
        park=update(RelayDelivery)
        .where(RelayDelivery.id.in_(behind_a_head.scalar_subquery()))
        .values(next_attempt_at=PARKED)
        .execution_options(synchronize_session=False),
        release_oldest=update(table)
        .where(table.c.id == head, table.c.next_attempt_at == PARKED)
        .values(unpark),
    )


def _order(delivery):
    """A delivery's place in its group: CreateTime, then message id (a row value, so that
    PostgreSQL scans the ordered index from there)."""
    return tuple_(delivery.create_time, delivery.message_id)


def _claim(limit: int) -> list[_Claim]:
    """Lease up to `limit` due heads of free groups; after a short claim, park what waits behind
    a head (so that the next claims do not scan it again). Each statement is whole on its own
    (SQLite has one writer; on PostgreSQL the caller takes turns)."""
    now = clock.now()
    lease_until = now + _lease()
    statements = _statements()
    leased = {"now": now, "lease_until": lease_until, "n": limit}
    ids = db.session.scalars(statements.lease, leased).all()
    if len(ids) < limit:
        db.session.execute(statements.park, {"now": now, "n": PARK_BATCH})
    return _requests_for(ids, lease_until) if ids else []


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
            Authorizer.component_appid,
            Authorizer.appid,
            Authorizer.merchant_id,
            RelayRoute.url,
            RelayRoute.format,
            type_coerce(RelayRoute.token, Text).label("sealed_token"),  # opened once per route
            type_coerce(RelayRoute.secret, Text).label("sealed_secret"),
        )
        .join(RelayMessage, RelayMessage.id == RelayDelivery.message_id)
        .join(Authorizer, Authorizer.id == RelayDelivery.authorizer_id)
        .join(RelayRoute, RelayRoute.id == RelayDelivery.route_id)
        .where(RelayDelivery.id.in_(ids))
    ).all()
    timestamp = int(clock.now().timestamp())
    targets: dict[int, _Target] = {}
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
                component_appid=row.component_appid,  # the account's platform
                authorizer_appid=row.appid,
                merchant_id=row.merchant_id,
                received_at=row.received_at,
                xml=row.payload,
                fields=fields,
            )
            target = targets.get(row.route_id)
            if target is None:
                target = targets[row.route_id] = _Target(
                    row.url, row.format, _open(row.sealed_token), _open(row.sealed_secret)
                )
            request = formats.build_request(target, outgoing, timestamp=timestamp)
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


def _open(sealed: str | None) -> str | None:
    return None if sealed is None else vault.current_vault().decrypt(sealed)


def _send(request: formats.Request | None, timeout: float, http: urllib3.PoolManager) -> _Outcome:
    """One attempt (in a sender thread, no database): any 2xx delivers; the body is ignored."""
    if request is None:
        return _Outcome(None, "unreadable message", 0)
    started = time.perf_counter()
    try:
        status, _ = transport.post(request, timeout=timeout, max_bytes=MAX_ANSWER_BYTES, http=http)
    except transport.AnswerUnread as exc:
        status = exc.status  # the status line came: that is the answer
    except transport.HTTPError as exc:
        return _Outcome(None, transport.describe(exc), int((time.perf_counter() - started) * 1000))
    return _Outcome(status, None, int((time.perf_counter() - started) * 1000))


def _record(results: list[tuple[_Claim, _Outcome]]) -> dict[str, int]:
    """Write a batch of outcomes (each only while its lease is ours); returns counts by status.
    Outcomes alike (most are "delivered, 200") go in one UPDATE, whatever their number."""
    counts = {"delivered": 0, "retry": 0, "dead": 0}
    if not results:
        return counts
    now = clock.now()
    max_attempts = int(current_app.config["RELAY_MAX_ATTEMPTS"])
    alike: dict[tuple, dict[int, int]] = defaultdict(dict)  # -> {delivery id: duration_ms}
    finished = []
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
        key = (claim.lease_until, status, next_attempt_at, outcome.status_code, outcome.error)
        alike[key][claim.delivery_id] = outcome.duration_ms
    table = RelayDelivery.__table__
    for (lease_until, status, next_attempt_at, code, error), durations in alike.items():
        db.session.execute(
            update(table)
            .where(table.c.id.in_(list(durations)), table.c.lease_until == lease_until)
            .values(
                status=status,
                attempts=table.c.attempts + 1,
                next_attempt_at=next_attempt_at,
                lease_until=None,
                last_status_code=code,
                last_error=error,
                duration_ms=case(durations, value=table.c.id),
                delivered_at=now if status == "delivered" else None,
            )
        )
    if finished:
        _release_next(finished, now)
    return counts


def _release_next(finished: list[_Claim], now: datetime) -> None:
    """Un-park the message after each finished head, in one statement. Harmless when that is not
    the group's new head (the next claim parks it again): what matters is that a group's oldest
    pending delivery is never left parked."""
    heads = (
        values(
            column("route_id", Integer),
            column("authorizer_id", Integer),
            column("create_time", BigInteger),
            column("message_id", Integer),
            name="finished",
        )
        .data([(c.route_id, c.authorizer_id, c.create_time, c.message_id) for c in finished])
        .cte("finished")
    )
    after = aliased(RelayDelivery, name="successor")
    successor = (
        select(after.id)
        .where(
            after.route_id == heads.c.route_id,
            after.authorizer_id == heads.c.authorizer_id,
            after.status == PENDING,
            _order(after) > tuple_(heads.c.create_time, heads.c.message_id),
        )
        .order_by(after.create_time, after.message_id)
        .limit(1)
        .scalar_subquery()
    )
    db.session.execute(
        update(RelayDelivery)
        .where(
            RelayDelivery.id.in_(select(successor).select_from(heads)),
            RelayDelivery.next_attempt_at == PARKED,
        )
        .values(next_attempt_at=now)
        .execution_options(synchronize_session=False)
    )


def release_groups(groups: Iterable[tuple[int, int]]) -> None:
    """Un-park the oldest pending delivery of each (route_id, authorizer_id) group: for callers
    that delete pending rows (retention), which may have taken a group's head. Call it while
    `taking_turns()` in the same transaction as the deletion."""
    now = clock.now()
    params = [{"p_route": route, "p_account": account, "p_now": now} for route, account in groups]
    if params:
        db.session.execute(_statements().release_oldest, params)


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
    """Long enough for a claimed delivery to wait behind the others claimed, then be tried (a
    process that dies holding leases delays their groups this long at most)."""
    timeout = float(current_app.config["RELAY_DELIVERY_TIMEOUT"])
    return timedelta(seconds=(CLAIMED_ROUNDS + 1) * timeout + 30)


_executors: dict[int, ThreadPoolExecutor] = {}
_executors_lock = threading.Lock()


def _executor(concurrency: int) -> ThreadPoolExecutor:
    """This process's sender threads (created after any fork, on first use); their keep-alive
    connections are transport.pool(concurrency)."""
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
