"""The message URL's relay path: find the account and its routes, store once, reply in time.

After `platform/messages.py` verified and decrypted a message (and answered the release-check
accounts itself):
1. one query finds the account with an active grant and the unpaused routes whose scope
   includes it; a message for an account we do not hold as active, or addressed to another
   account than the path names, gets `success` and nothing is stored;
2. no route takes the message's type: `success`, nothing stored;
3. one transaction stores the message and one delivery per route (async: `pending`, for the
   outbox; reply: `in_flight`). Its insert takes the dedupe key before anything is forwarded,
   so a retry of the same message finds the row (or waits on the uncommitted one) and never
   reaches the handler again; with a reply route the commit runs while the handler works;
4. the reply route gets the message synchronously within what is left of RELAY_REPLY_TIMEOUT,
   counted from the request's arrival; its checked reply is stored (encrypted) on the delivery
   and returned encrypted with the platform's key. Past the budget: `success`, `late`. An error,
   non-2xx or invalid reply: `success`, `failed`. Never retried: the handler may have acted.
5. WeChat's retries wait for the first request's outcome (a process-local event, else polling
   the delivery row) within their own budget and get the same reply, encrypted anew. An
   `in_flight` row older than the budget (its request died mid-forward) is treated as late.
No transaction is open while a retry waits, nor once the commit that overlaps the forward ended.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import Text, and_, bindparam, insert, select, type_coerce, update
from sqlalchemy.exc import IntegrityError

from app import metrics, vault
from app.extensions import db, message_crypto
from app.models import Authorizer, Grant, RelayDelivery, RelayMessage, RelayRoute
from app.models.grants import GrantStatus
from app.services import clock
from app.services.platform import health, intake
from app.services.relay import transport
from app.services.relay.formats import Outgoing, build_request, read_reply
from app.services.relay.routes import pick_reply_route, scope_includes, type_key, types_match
from app.wechat.crypto import OpenedMessage
from app.wechat.events import EventMessage, Message
from app.wechat.replies import InvalidReply

log = logging.getLogger(__name__)

SUCCESS = "success"
# Below this much budget the handler could not answer in time anyway: do not call it.
MIN_FORWARD_SECONDS = 0.05
# How often a retry re-reads the first request's delivery when that runs in another process.
POLL_SECONDS = (0.005, 0.01, 0.02, 0.05)
# An in_flight reply delivery this much older than the budget lost its request (a crash).
ABANDON_GRACE = 0.5
ABANDONED_AFTER = timedelta(minutes=1)  # the periodic sweep's (mark_abandoned) margin
# Forwards run on these threads so the budget is a hard deadline (HTTP timeouts are per phase,
# not total); a late forward finishes here, its answer dropped.
_forwarders = ThreadPoolExecutor(
    max_workers=transport.SHARED_POOL_SIZE, thread_name_prefix="relay-reply"
)
# Outcomes are written after the answer went out (see _settle_later).
_settlers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="relay-settle")
# Reply deliveries this process is forwarding (until settled): a retry here waits on them.
_in_flight: dict[int, _Pending] = {}
_in_flight_lock = threading.Lock()
# Called (no arguments) after messages with async deliveries were committed: the outbox's
# wake-up (see `on_async_stored`).
_async_listeners: list[Callable[[], None]] = []


def on_async_stored(fn: Callable[[], None]) -> Callable[[], None]:
    """Call fn() after each intake that stored async deliveries (e.g. to wake the outbox
    worker at once instead of at its next poll). fn must be quick and must not raise."""
    _async_listeners.append(fn)
    return fn


@dataclass(frozen=True)
class RouteView:
    """What the intake needs of a route (a row of the lookup; credentials decrypted on use)."""

    id: int
    url: str
    format: str
    mode: str
    msg_types: tuple[str, ...]
    merchant_id: int | None
    authorizer_appid: str | None
    sealed_token: str | None
    sealed_secret: str | None

    @property
    def token(self) -> str | None:
        return _open(self.sealed_token)

    @property
    def secret(self) -> str | None:
        return _open(self.sealed_secret)


def _open(sealed: str | None) -> str | None:
    return None if sealed is None else vault.current_vault().decrypt(sealed)


@dataclass(frozen=True)
class Account:
    id: int
    appid: str
    merchant_id: int | None
    user_name: str | None
    routes: tuple[RouteView, ...]


# One statement per message: the account with an active grant, outer-joined to the unpaused
# routes whose scope includes it (type filters are applied in Python: they are JSON lists).
_LOOKUP = (
    select(
        Authorizer.id,
        Authorizer.merchant_id,
        Authorizer.user_name,
        RelayRoute.id.label("route_id"),
        RelayRoute.url,
        RelayRoute.format,
        RelayRoute.mode,
        RelayRoute.msg_types,
        RelayRoute.merchant_id.label("route_merchant_id"),
        RelayRoute.authorizer_appid,
        type_coerce(RelayRoute.token, Text).label("sealed_token"),
        type_coerce(RelayRoute.secret, Text).label("sealed_secret"),
    )
    .select_from(Authorizer)
    .join(Grant, and_(Grant.authorizer_id == Authorizer.id, Grant.status == GrantStatus.ACTIVE))
    .outerjoin(
        RelayRoute,
        and_(
            RelayRoute.paused.is_(False),
            scope_includes(Authorizer.appid, Authorizer.merchant_id),
        ),
    )
    .where(Authorizer.appid == bindparam("appid"))
    .order_by(RelayRoute.id)
)
_INSERT_MESSAGE = insert(RelayMessage.__table__).returning(RelayMessage.__table__.c.id)
_INSERT_DELIVERY = insert(RelayDelivery.__table__)
_INSERT_REPLY_DELIVERY = insert(RelayDelivery.__table__).returning(RelayDelivery.__table__.c.id)
_deliveries = RelayDelivery.__table__.c
_REPLY_STATE = (
    select(_deliveries.id, _deliveries.status, _deliveries.reply, _deliveries.created_at)
    .join(RelayMessage, RelayMessage.id == _deliveries.message_id)
    .where(RelayMessage.dedupe_key == bindparam("key"), _deliveries.mode == "reply")
)


def find_account(appid: str) -> Account | None:
    """The account with an active grant and its candidate routes, or None (one query, in the
    session's transaction: the caller ends it, by storing the message or by a rollback)."""
    rows = db.session.connection().execute(_LOOKUP, {"appid": appid}).all()
    if not rows:
        return None
    first = rows[0]
    routes = tuple(
        RouteView(
            id=row.route_id,
            url=row.url,
            format=row.format,
            mode=row.mode,
            msg_types=tuple(row.msg_types or ()),
            merchant_id=row.route_merchant_id,
            authorizer_appid=row.authorizer_appid,
            sealed_token=row.sealed_token,
            sealed_secret=row.sealed_secret,
        )
        for row in rows
        if row.route_id is not None
    )
    return Account(first.id, appid, first.merchant_id, first.user_name, routes)


def dedupe_key(appid: str, message: Message) -> str:
    """SHA-256 of the appid and the message's own key (MsgId, else sender + CreateTime +
    Event/MsgType): WeChat's retries of one message collide, other accounts' never do."""
    return hashlib.sha256(f"{appid}\x1f{message.dedupe_key}".encode()).hexdigest()


def message_type(message: Message) -> str:
    """The message's type as routes name it: text, image, ..., event.subscribe (lower case)."""
    event = message.event if isinstance(message, EventMessage) else message.fields.get("Event")
    return type_key(message.msg_type, event)


def relay(
    appid: str,
    message: Message,
    opened: OpenedMessage,
    args: Mapping[str, str],
    *,
    arrived: float,
) -> str:
    """Relay a verified message for `appid`; returns the reply body for WeChat ("success" or
    encrypted reply XML). `arrived` is the request's time.perf_counter() at arrival."""
    deadline = arrived + current_app.config["RELAY_REPLY_TIMEOUT"]
    # The lookup and the insert share one transaction (fewer round trips on the hot path).
    account = find_account(appid)
    if account is None:
        db.session.rollback()
        health.count("messages:other")  # not ours to read: we keep the count only
        return _outcome("not_active")
    if account.user_name and account.user_name != message.to_user_name:
        db.session.rollback()
        return _outcome("misaddressed")
    key = message_type(message)
    routes = [route for route in account.routes if types_match(route.msg_types, key)]
    if not routes:
        db.session.rollback()
        return _outcome("no_route")
    reply_route = pick_reply_route(routes)
    extra = [route for route in routes if route.mode == "reply" and route is not reply_route]
    if extra:  # overlapping reply routes (see routes.py): only the most specific one answers
        log.warning("relay: reply routes %s also match; route %s answers",
                    [route.id for route in extra], reply_route.id)  # fmt: skip
    async_routes = [route for route in routes if route.mode == "async"]
    digest = dedupe_key(appid, message)
    received_at = clock.now()
    # With a reply route the commit runs while the handler works (one round trip less on the
    # reply's path): the uncommitted row already holds the message's dedupe key against retries.
    stored = _store(account, message, opened.xml, key, digest, received_at, reply_route,
                    async_routes, commit=reply_route is None)  # fmt: skip
    if stored is None:
        metrics.RELAY_MESSAGES.labels(outcome="duplicate").inc()
        return _answer_retry(digest, args, opened, deadline)
    message_id, delivery_id = stored
    if reply_route is None:
        _stored(async_routes)
        return SUCCESS
    outgoing = Outgoing(
        message_id=message_id,
        delivery_id=delivery_id,
        component_appid=message_crypto().appid,
        authorizer_appid=appid,
        merchant_id=account.merchant_id,
        received_at=received_at,
        xml=opened.xml,
        fields=message.fields,
    )
    try:
        result = _forward(reply_route, outgoing, deadline, meanwhile=lambda: _commit(async_routes))
    except BaseException:
        _forget(delivery_id)  # its waiters fall back to the row (abandoned after the budget)
        raise
    _publish(delivery_id, result)
    _settle_later(delivery_id, result)
    return _encrypted(result.reply, args, opened)


def _outcome(outcome: str) -> str:
    metrics.RELAY_MESSAGES.labels(outcome=outcome).inc()
    return SUCCESS


def _commit(async_routes: list[RouteView]) -> None:
    """Commit the stored message (a failure raises: nothing is acknowledged, WeChat retries)."""
    try:
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    _stored(async_routes)


def _stored(async_routes: list[RouteView]) -> None:
    """After the commit: count the message, and wake the outbox for its async deliveries."""
    metrics.RELAY_MESSAGES.labels(outcome="stored").inc()
    if async_routes:
        _wake_outbox()


# --- storing ----------------------------------------------------------------------------------


def _store(
    account: Account,
    message: Message,
    xml: str,
    key: str,
    digest: str,
    now: datetime,
    reply_route: RouteView | None,
    async_routes: list[RouteView],
    *,
    commit: bool,
) -> tuple[int, int | None] | None:
    """Insert the message and its deliveries in one transaction, committed unless `commit` is
    false (the caller commits); (message id, reply delivery id), or None when the message is
    already stored (a retry)."""
    connection = db.session.connection()
    delivery_id = None
    common = {"authorizer_id": account.id, "create_time": message.create_time, "attempts": 0,
              "next_attempt_at": now, "created_at": now}  # fmt: skip
    try:
        message_id = connection.execute(
            _INSERT_MESSAGE,
            {"authorizer_id": account.id, "dedupe_key": digest, "msg_type": key[:64],
             "create_time": message.create_time, "received_at": now, "payload": xml},
        ).scalar_one()  # fmt: skip
        if reply_route is not None:
            delivery_id = connection.execute(
                _INSERT_REPLY_DELIVERY,
                {**common, "message_id": message_id, "route_id": reply_route.id,
                 "mode": "reply", "status": "in_flight"},
            ).scalar_one()  # fmt: skip
            _hold(delivery_id)  # before the commit: a retry here may see the row at once
        if async_routes:
            connection.execute(
                _INSERT_DELIVERY,
                [{**common, "message_id": message_id, "route_id": route.id, "mode": "async",
                  "status": "pending"} for route in async_routes],
            )  # fmt: skip
        if commit:
            db.session.commit()
    except IntegrityError:
        db.session.rollback()
        if delivery_id is not None:
            _forget(delivery_id)
        if not _already_stored(digest):  # e.g. a route deleted meanwhile: nothing to relay
            log.warning("relay: message not stored (a route or the account changed meanwhile)")
        return None
    except BaseException:
        db.session.rollback()
        if delivery_id is not None:
            _forget(delivery_id)
        raise
    return message_id, delivery_id


def _already_stored(digest: str) -> bool:
    found = db.session.scalar(select(RelayMessage.id).where(RelayMessage.dedupe_key == digest))
    db.session.commit()
    return found is not None


def _wake_outbox() -> None:
    for listener in _async_listeners:
        try:
            listener()
        except Exception as exc:  # the deliveries are stored; the outbox's poll finds them
            log.warning("relay: outbox wake-up failed: %s", type(exc).__name__)


# --- forwarding to the reply route ------------------------------------------------------------


@dataclass
class _Result:
    status: str  # delivered | late | failed
    reply: str | None = None
    status_code: int | None = None
    error: str | None = None
    duration_ms: int | None = None
    attempts: int = 1


def _forward(
    route: RouteView, outgoing: Outgoing, deadline: float, *, meanwhile: Callable[[], None]
) -> _Result:
    """Forward to the reply route within the deadline, running `meanwhile` while the handler
    works: the outcome, with the checked plaintext reply when delivered."""
    now = int(clock.now().timestamp())
    request = build_request(route, outgoing, timestamp=now)
    remaining = deadline - time.perf_counter()
    if remaining < MIN_FORWARD_SECONDS:
        meanwhile()
        result = _Result("late", error="no time left to forward", attempts=0)
    else:
        future = _forwarders.submit(_post_timed, request, remaining)
        meanwhile()
        result = _outcome_of(future, route, outgoing, now, deadline)
    metrics.RELAY_DELIVERIES.labels(mode="reply", status=result.status).inc()
    return result


def _outcome_of(future: Future, route, outgoing, now: int, deadline: float) -> _Result:
    try:
        status_code, body, seconds = future.result(timeout=max(0.0, deadline - time.perf_counter()))
    except FutureTimeout:
        started = future.cancel() is False  # a queued forward never reaches the handler
        return _Result("late", error="timeout", attempts=1 if started else 0)
    except Exception as exc:  # refused, reset, too large, ...: never the reply's content
        error = transport.describe(exc)
        return _Result("late" if error == "timeout" else "failed", error=error)
    duration_ms = int(seconds * 1000)
    if not 200 <= status_code < 300:
        return _Result("failed", status_code=status_code, error=f"HTTP {status_code}",
                       duration_ms=duration_ms)  # fmt: skip
    try:
        reply = read_reply(route, outgoing, body, now=now)
    except InvalidReply as exc:
        return _Result("failed", status_code=status_code, error=f"invalid reply: {exc}"[:200],
                       duration_ms=duration_ms)  # fmt: skip
    return _Result("delivered", reply=reply, status_code=status_code, duration_ms=duration_ms)


def _post_timed(request, timeout: float) -> tuple[int, bytes, float]:
    """On a forwarder thread: POST and time the handler (observed even when late)."""
    started = time.perf_counter()
    status_code, body = transport.post(request, timeout=timeout)
    seconds = time.perf_counter() - started
    metrics.RELAY_REPLY_SECONDS.observe(seconds)
    return status_code, body, seconds


def _settle(delivery_id: int, result: _Result) -> None:
    """Record the outcome (only over `in_flight`: a retry may have declared it abandoned)."""
    now = clock.now()
    db.session.connection().execute(
        update(RelayDelivery.__table__)
        .where(_deliveries.id == delivery_id, _deliveries.status == "in_flight")
        .values(
            status=result.status,
            reply=result.reply,
            attempts=result.attempts,
            last_status_code=result.status_code,
            last_error=result.error,
            duration_ms=result.duration_ms,
            delivered_at=now if result.status == "delivered" else None,
        )
    )
    db.session.commit()


def _settle_later(delivery_id: int, result: _Result) -> None:
    """Write the outcome after WeChat has its answer: the commit is off the reply's latency.
    This process's retries read the published result meanwhile; other processes' see the row
    once committed (a crash before that leaves it in flight: abandoned after the budget)."""
    app = current_app._get_current_object()

    def run():
        try:
            with app.app_context():
                try:
                    _settle(delivery_id, result)
                finally:
                    db.session.remove()
        except Exception as exc:
            log.warning("relay: delivery %s not settled: %s", delivery_id, type(exc).__name__)
        finally:
            _forget(delivery_id)

    _settlers.submit(run)


def _encrypted(reply: str | None, args: Mapping[str, str], opened: OpenedMessage) -> str:
    if reply is None:
        return SUCCESS
    return message_crypto().encrypt_reply(
        reply, args["timestamp"], args["nonce"], use_previous_key=opened.used_previous_key
    )


# --- WeChat's retries ---------------------------------------------------------------------------


class _Pending:
    """A reply delivery this process is forwarding: its outcome once known."""

    def __init__(self):
        self.done = threading.Event()
        self.result: _Result | None = None


def _hold(delivery_id: int) -> None:
    with _in_flight_lock:
        _in_flight[delivery_id] = _Pending()


def _publish(delivery_id: int, result: _Result) -> None:
    with _in_flight_lock:
        pending = _in_flight.get(delivery_id)
    if pending is not None:
        pending.result = result
        pending.done.set()


def _forget(delivery_id: int) -> None:
    with _in_flight_lock:
        pending = _in_flight.pop(delivery_id, None)
    if pending is not None:
        pending.done.set()  # a waiter without a result reads the row


def _answer_retry(
    digest: str, args: Mapping[str, str], opened: OpenedMessage, deadline: float
) -> str:
    """The first request's reply for a retried message: waited for while in flight (within
    this request's budget), encrypted anew; `success` when there is none."""
    state = _reply_state(digest)
    if state is None:
        return SUCCESS
    delivery_id, status, reply, created_at = state
    polls = iter(POLL_SECONDS)
    while status == "in_flight":
        with _in_flight_lock:
            pending = _in_flight.get(delivery_id)
        if pending is None and _abandoned(created_at):
            _settle(delivery_id, _Result("late", error="abandoned in flight", attempts=0))
            return SUCCESS
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return SUCCESS
        if pending is not None:  # forwarded by this process: woken by its outcome
            pending.done.wait(remaining)
            if pending.result is not None:
                status, reply = pending.result.status, pending.result.reply
                break
        else:
            time.sleep(min(remaining, next(polls, POLL_SECONDS[-1])))
        _, status, reply, _ = _reply_state(digest)
    return _encrypted(reply, args, opened) if status == "delivered" else SUCCESS


def _reply_state(digest: str):
    row = db.session.connection().execute(_REPLY_STATE, {"key": digest}).first()
    db.session.commit()  # never wait inside a transaction
    return None if row is None else tuple(row)


def _abandoned(created_at: datetime) -> bool:
    return created_at < _abandon_cutoff()


def _abandon_cutoff() -> datetime:
    budget = timedelta(seconds=current_app.config["RELAY_REPLY_TIMEOUT"] + ABANDON_GRACE)
    return clock.now() - budget


def mark_abandoned() -> str:
    """Reply deliveries left in flight past the budget (their process died mid-forward, and no
    retry of the message came to notice): late. Runs with every inbox retry run; returns a
    summary, "" when there were none."""
    cutoff = clock.now() - ABANDONED_AFTER  # well past any settle still queued in a process
    done = db.session.execute(
        update(RelayDelivery.__table__)
        .where(_deliveries.status == "in_flight", _deliveries.created_at < cutoff)
        .values(status="late", last_error="abandoned in flight")
    ).rowcount
    db.session.commit()
    return f"relay: {done} abandoned reply deliveries marked late" if done else ""


intake.register_retry(mark_abandoned)
