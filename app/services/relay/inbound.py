"""The message URL's relay path: find the account and its routes, store once, reply in time.

After `platform/messages.py` verified and decrypted a message (and answered the release-check
accounts itself), the message joins this process's group commit (`_GroupCommit`): the messages
that requests store at the same moment share one transaction, written by whichever came first.
A message is for the current platform's account (`platforms.current_appid()` when `relay` is
called): one account authorized to two platforms is two accounts here, each with its own
messages, and a batch may hold several platforms' messages, each matched to its own.
1. one query finds the accounts (platform, appid) with an active grant and the unpaused routes
   whose scope includes them (a route scoped to a platform takes only that platform's
   accounts); a message for an account we do not hold as active, or addressed to another
   account than the path names, gets `success` and nothing is stored;
2. no route takes the message's type: `success`, nothing stored;
3. the transaction stores each message and one delivery per route (async: `pending`, for the
   outbox; reply: `in_flight`) and commits before anything is forwarded or acknowledged. The
   dedupe key is unique (ON CONFLICT DO NOTHING), so a retry of the same message finds the row
   and never reaches the handler again;
4. the reply route gets the message synchronously within what is left of RELAY_REPLY_TIMEOUT,
   counted from the request's arrival; its checked reply is stored (encrypted) on the delivery
   and returned encrypted with the platform's key. Past the budget: `success`, `late`. An error,
   non-2xx or invalid reply: `success`, `failed`. Never retried: the handler may have acted.
5. WeChat's retries wait for the first request's outcome (a process-local event, else polling
   the delivery row) within their own budget and get the same reply, encrypted anew. An
   `in_flight` row older than the budget (its request died mid-forward) is treated as late.
No transaction is open while the handler is called or while a retry waits.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import Text, and_, bindparam, insert, select, type_coerce, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from app import metrics, vault
from app.extensions import db
from app.models import Authorizer, Grant, RelayDelivery, RelayMessage, RelayRoute
from app.models.grants import GrantStatus
from app.services import clock
from app.services.platform import health, intake, platforms
from app.services.platform.platforms import message_crypto
from app.services.relay import transport
from app.services.relay.formats import Outgoing, build_request, read_reply
from app.services.relay.routes import pick_reply_route, scope_includes, type_key, types_match
from app.wechat.crypto import MessageCrypto, OpenedMessage
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
# Outcomes are written after the answer went out, by one draining thread per app (_Settler).
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
    component_appid: str | None  # the route's platform scope (None: every platform)
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
    component_appid: str
    appid: str
    merchant_id: int | None
    user_name: str | None
    routes: tuple[RouteView, ...]


# One statement per batch: the accounts with an active grant, each outer-joined to the unpaused
# routes whose scope includes it (type filters are applied in Python: they are JSON lists).
_LOOKUP = (
    select(
        Authorizer.component_appid,
        Authorizer.appid,
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
        RelayRoute.component_appid.label("route_component_appid"),
        type_coerce(RelayRoute.token, Text).label("sealed_token"),
        type_coerce(RelayRoute.secret, Text).label("sealed_secret"),
    )
    .select_from(Authorizer)
    .join(Grant, and_(Grant.authorizer_id == Authorizer.id, Grant.status == GrantStatus.ACTIVE))
    .outerjoin(
        RelayRoute,
        and_(
            RelayRoute.paused.is_(False),
            scope_includes(Authorizer.appid, Authorizer.merchant_id, Authorizer.component_appid),
        ),
    )
    # The accounts of every (platform, appid) asked for, and maybe a few more (another asked
    # platform's account of an asked appid): _find_accounts keeps only the pairs asked for.
    .where(
        Authorizer.component_appid.in_(bindparam("components", expanding=True)),
        Authorizer.appid.in_(bindparam("appids", expanding=True)),
    )
    .order_by(RelayRoute.id)
)
# A retry of a stored message inserts nothing (no error, no rollback); the RETURNING
# rows say which were new. The ON CONFLICT clause is written per dialect.
_INSERT_MESSAGES = {
    module.dialect.name: module.insert(RelayMessage.__table__)
    .on_conflict_do_nothing(index_elements=["dedupe_key"])
    .returning(RelayMessage.__table__.c.dedupe_key, RelayMessage.__table__.c.id)
    for module in (postgresql, sqlite)
}
_INSERT_DELIVERIES = insert(RelayDelivery.__table__)
_INSERT_REPLY_DELIVERIES = _INSERT_DELIVERIES.returning(
    RelayDelivery.__table__.c.message_id, RelayDelivery.__table__.c.id
)
_deliveries = RelayDelivery.__table__.c
_REPLY_STATE = (
    select(_deliveries.id, _deliveries.status, _deliveries.reply, _deliveries.created_at)
    .join(RelayMessage, RelayMessage.id == _deliveries.message_id)
    .where(RelayMessage.dedupe_key == bindparam("key"), _deliveries.mode == "reply")
)


def _find_accounts(pairs: set[tuple[str, str]]) -> dict[tuple[str, str], Account]:
    """The accounts among `pairs` (component_appid, appid) with an active grant, with their
    candidate routes (one query, in the session's transaction). Never another platform's
    account of the same appid."""
    params = {"components": sorted({c for c, _ in pairs}), "appids": sorted({a for _, a in pairs})}
    rows: dict[tuple[str, str], list] = {}
    for row in db.session.connection().execute(_LOOKUP, params):
        pair = (row.component_appid, row.appid)
        if pair in pairs:
            rows.setdefault(pair, []).append(row)
    return {pair: _account(pair, found) for pair, found in rows.items()}


def _account(pair: tuple[str, str], rows: list) -> Account:
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
            component_appid=row.route_component_appid,
            sealed_token=row.sealed_token,
            sealed_secret=row.sealed_secret,
        )
        for row in rows
        if row.route_id is not None
    )
    component_appid, appid = pair
    return Account(first.id, component_appid, appid, first.merchant_id, first.user_name, routes)


def dedupe_key(appid: str, message: Message, component_appid: str | None = None) -> str:
    """SHA-256 of the account and the message's own key (MsgId, else sender + CreateTime +
    Event/MsgType): WeChat's retries of one message collide, other accounts' never do.

    The account is (platform, appid): an account authorized to two platforms gets each message
    pushed to both, and each platform stores its copy. The default platform's key is the
    pre-#16 one (appid only), so its stored messages and WeChat's retries still collide; other
    platforms' keys start with their component appid. `component_appid`: default the current
    platform."""
    component_appid = component_appid or platforms.current_appid()
    account = appid if platforms.is_default(component_appid) else f"{component_appid}\x1f{appid}"
    return hashlib.sha256(f"{account}\x1f{message.dedupe_key}".encode()).hexdigest()


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
    """Relay a verified message for the current platform's account `appid`; returns the reply
    body for WeChat ("success" or encrypted reply XML, with this platform's keys). `arrived` is
    the request's time.perf_counter() at arrival."""
    deadline = arrived + current_app.config["RELAY_REPLY_TIMEOUT"]
    component_appid = platforms.current_appid()
    crypto = message_crypto()  # this request's platform's, whoever writes the batch
    arrival = _Arrival(appid, message, opened.xml, message_type(message),
                       dedupe_key(appid, message, component_appid), clock.now(),
                       component_appid)  # fmt: skip
    _group_commit().store(arrival)
    if arrival.error is not None:
        raise StoreFailed() from arrival.error
    if arrival.outcome == "duplicate":
        metrics.RELAY_MESSAGES.labels(outcome="duplicate").inc()
        return _answer_retry(arrival.digest, args, opened, deadline, crypto)
    if arrival.outcome != "stored":
        if arrival.outcome == "not_active":
            health.count("messages:other")  # not ours to read: we keep the count only
        return _outcome(arrival.outcome)
    metrics.RELAY_MESSAGES.labels(outcome="stored").inc()
    reply_route, delivery_id = arrival.reply_route, arrival.delivery_id
    if reply_route is None:
        return SUCCESS
    outgoing = Outgoing(
        message_id=arrival.message_id,
        delivery_id=delivery_id,
        component_appid=component_appid,
        authorizer_appid=appid,
        merchant_id=arrival.account.merchant_id,
        received_at=arrival.received_at,
        xml=opened.xml,
        fields=message.fields,
    )
    try:
        result = _forward(reply_route, outgoing, deadline)
    except BaseException:
        _forget(delivery_id)  # its waiters fall back to the row (abandoned after the budget)
        raise
    _publish(delivery_id, result)
    _settle_later(delivery_id, result)
    return _encrypted(result.reply, args, opened, crypto)


def _outcome(outcome: str) -> str:
    metrics.RELAY_MESSAGES.labels(outcome=outcome).inc()
    return SUCCESS


# --- storing: group commit --------------------------------------------------------------------


class StoreFailed(Exception):
    """The database refused the batch this message was in: nothing is acknowledged (500), so
    WeChat retries it."""


@dataclass(eq=False)
class _Arrival:
    """A verified message waiting to be stored, and what storing it came to."""

    appid: str
    message: Message
    xml: str
    key: str  # its type, as routes name it
    digest: str
    received_at: datetime
    component_appid: str  # the platform the message came for
    outcome: str | None = None  # stored | duplicate | not_active | misaddressed | no_route
    account: Account | None = None
    reply_route: RouteView | None = None
    async_routes: list[RouteView] = field(default_factory=list)
    message_id: int | None = None
    delivery_id: int | None = None  # the reply delivery, held in flight
    error: BaseException | None = None
    done: bool = False


class _GroupCommit:
    """One transaction for the messages this process's requests store at the same moment: the
    first to come is the leader and writes everyone's (lookup, inserts, commit), the others wait
    for it. A lone message is its own leader, so there is no hand-off at low load; under load
    the round trips and the commit are shared (see bench/README.md)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._queue: list[_Arrival] = []
        self._writing = False

    def store(self, arrival: _Arrival) -> None:
        with self._cond:
            self._queue.append(arrival)
            while self._writing and not arrival.done:
                self._cond.wait()
            if arrival.done:
                return
            self._writing = True
            batch, self._queue = self._queue, []
        try:
            _write(batch)
        except BaseException as exc:  # e.g. the worker stopping: nobody is left undecided
            for item in batch:
                if item.outcome is None and item.error is None:
                    item.error = exc
            raise
        finally:
            with self._cond:
                for item in batch:
                    item.done = True
                self._writing = False
                self._cond.notify_all()


def _group_commit() -> _GroupCommit:
    """This app's group commit (one per app and process)."""
    return current_app.extensions.setdefault("grantdesk.relay_group_commit", _GroupCommit())


def _write(batch: list[_Arrival]) -> None:
    """Store a batch, deciding each arrival's outcome. A batch that breaks a constraint (a route
    deleted meanwhile) is written again one arrival at a time, so that only the bad one fails;
    any other error fails the batch (each request answers 500 and WeChat retries)."""
    try:
        _write_once(batch)
        return
    except IntegrityError:
        db.session.rollback()
    except Exception as exc:
        db.session.rollback()
        for item in batch:
            item.error = exc
        return
    for item in batch:
        item.outcome = item.account = item.reply_route = None
        item.message_id = item.delivery_id = None
        try:
            _write_once([item])
        except IntegrityError:
            db.session.rollback()
            log.warning("relay: message not stored (a route or the account changed meanwhile)")
            item.outcome = "duplicate"  # answered from its row if there is one, else success
        except Exception as exc:
            db.session.rollback()
            item.error = exc


def _write_once(batch: list[_Arrival]) -> None:
    """One transaction: look the accounts up, insert the new messages (a stored one is a
    retry: ON CONFLICT DO NOTHING) and one delivery per route, hold the reply deliveries in
    flight, commit, then wake the outbox."""
    accounts = _find_accounts({(item.component_appid, item.appid) for item in batch})
    new: list[_Arrival] = []
    for item in batch:
        if not _route(item, accounts.get((item.component_appid, item.appid))):
            continue
        if any(other.digest == item.digest for other in new):
            item.outcome = "duplicate"  # WeChat's retry, in the same batch
        else:
            new.append(item)
    connection = db.session.connection()
    held: list[int] = []
    try:
        if new:
            # In dedupe-key order: two processes' batches then wait on each other's keys in
            # one order, never in a circle (a deadlock would fail both batches).
            rows = [{"authorizer_id": item.account.id, "dedupe_key": item.digest,
                     "msg_type": item.key[:64], "create_time": item.message.create_time,
                     "received_at": item.received_at, "payload": item.xml}
                    for item in sorted(new, key=lambda item: item.digest)]  # fmt: skip
            insert_messages = _INSERT_MESSAGES[connection.dialect.name]
            ids = dict(connection.execute(insert_messages, _params(rows)).all())
            replies, pending = [], []
            for item in new:
                item.message_id = ids.get(item.digest)
                item.outcome = "stored" if item.message_id is not None else "duplicate"
                if item.message_id is None:
                    continue
                now = item.received_at
                common = {"authorizer_id": item.account.id, "message_id": item.message_id,
                          "create_time": item.message.create_time, "attempts": 0,
                          "next_attempt_at": now, "created_at": now}  # fmt: skip
                if item.reply_route is not None:
                    replies.append({**common, "route_id": item.reply_route.id, "mode": "reply",
                                    "status": "in_flight"})  # fmt: skip
                pending += [{**common, "route_id": route.id, "mode": "async", "status": "pending"}
                            for route in item.async_routes]  # fmt: skip
            if replies:
                by_message = dict(
                    connection.execute(_INSERT_REPLY_DELIVERIES, _params(replies)).all()
                )
                for item in new:
                    if item.outcome == "stored" and item.reply_route is not None:
                        item.delivery_id = by_message[item.message_id]
                        _hold(item.delivery_id)  # before the commit: a retry may see the row
                        held.append(item.delivery_id)
            if pending:
                connection.execute(_INSERT_DELIVERIES, _params(pending))
        db.session.commit()
    except BaseException:
        for delivery_id in held:
            _forget(delivery_id)
        raise
    if any(item.outcome == "stored" and item.async_routes for item in new):
        _wake_outbox()


def _route(item: _Arrival, account: Account | None) -> bool:
    """Decide where `item` goes; True when it is to be stored (its outcome is set otherwise)."""
    if account is None:
        item.outcome = "not_active"
        return False
    if account.user_name and account.user_name != item.message.to_user_name:
        item.outcome = "misaddressed"
        return False
    routes = [route for route in account.routes if types_match(route.msg_types, item.key)]
    if not routes:
        item.outcome = "no_route"
        return False
    item.account = account
    item.reply_route = pick_reply_route(routes)
    extra = [route for route in routes if route.mode == "reply" and route is not item.reply_route]
    if extra:  # overlapping reply routes (see routes.py): only the most specific one answers
        log.warning("relay: reply routes %s also match; route %s answers",
                    [route.id for route in extra], item.reply_route.id)  # fmt: skip
    item.async_routes = [route for route in routes if route.mode == "async"]
    return True


def _params(rows: list[dict]) -> list[dict] | dict:
    """One row as a plain execute (cheaper than SQLAlchemy's multi-row path: the usual case at
    low load), several as one multi-row statement."""
    return rows[0] if len(rows) == 1 else rows


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


def _forward(route: RouteView, outgoing: Outgoing, deadline: float) -> _Result:
    """Forward to the reply route within the deadline: the outcome, with the checked plaintext
    reply when delivered."""
    now = int(clock.now().timestamp())
    request = build_request(route, outgoing, timestamp=now)
    remaining = deadline - time.perf_counter()
    if remaining < MIN_FORWARD_SECONDS:
        result = _Result("late", error="no time left to forward", attempts=0)
    else:
        future = _forwarders.submit(_post_timed, request, remaining)
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


# One statement for every outcome of a batch (executemany), only over `in_flight`: a retry may
# have declared the delivery abandoned meanwhile.
_SETTLE = (
    update(RelayDelivery.__table__)
    .where(_deliveries.id == bindparam("b_id"), _deliveries.status == "in_flight")
    .values(
        status=bindparam("b_status"),
        reply=bindparam("b_reply"),
        attempts=bindparam("b_attempts"),
        last_status_code=bindparam("b_status_code"),
        last_error=bindparam("b_error"),
        duration_ms=bindparam("b_duration_ms"),
        delivered_at=bindparam("b_delivered_at"),
    )
)


def _settle(outcomes: list[tuple[int, _Result]]) -> None:
    """Record reply outcomes, in one transaction."""
    now = clock.now()
    rows = [
        {"b_id": delivery_id, "b_status": result.status, "b_reply": result.reply,
         "b_attempts": result.attempts, "b_status_code": result.status_code,
         "b_error": result.error, "b_duration_ms": result.duration_ms,
         "b_delivered_at": now if result.status == "delivered" else None}
        for delivery_id, result in outcomes
    ]  # fmt: skip
    db.session.connection().execute(_SETTLE, rows)
    db.session.commit()


class _Settler:
    """Writes reply outcomes after WeChat has its answer, off the replies' latency: one thread
    drains what came while it wrote the last batch, in one transaction. Under load that is one
    commit for many replies, instead of a commit each competing with the requests for the
    interpreter and the write lock."""

    def __init__(self, app) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.pending: list[tuple[int, _Result]] = []
        self.draining = False

    def add(self, delivery_id: int, result: _Result) -> None:
        with self.lock:
            self.pending.append((delivery_id, result))
            if self.draining:
                return
            self.draining = True
        _settlers.submit(self.drain)

    def drain(self) -> None:
        while True:
            with self.lock:
                batch, self.pending = self.pending, []
                if not batch:
                    self.draining = False
                    return
            try:
                with self.app.app_context():
                    try:
                        _settle(batch)
                    finally:
                        db.session.remove()
            except Exception as exc:
                log.warning("relay: %d deliveries not settled: %s", len(batch), type(exc).__name__)
            finally:
                for delivery_id, _ in batch:
                    _forget(delivery_id)


def _settle_later(delivery_id: int, result: _Result) -> None:
    """Write the outcome after WeChat has its answer (see _Settler). This process's retries
    read the published result meanwhile; other processes' see the row once committed (a crash
    before that leaves it in flight: abandoned after the budget)."""
    app = current_app._get_current_object()
    settler = app.extensions.get("grantdesk.relay_settler")
    if settler is None:
        settler = app.extensions.setdefault("grantdesk.relay_settler", _Settler(app))
    settler.add(delivery_id, result)


def _encrypted(
    reply: str | None, args: Mapping[str, str], opened: OpenedMessage, crypto: MessageCrypto
) -> str:
    """The reply sealed with the keys of the platform the message came for (`crypto`)."""
    if reply is None:
        return SUCCESS
    return crypto.encrypt_reply(
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
    digest: str,
    args: Mapping[str, str],
    opened: OpenedMessage,
    deadline: float,
    crypto: MessageCrypto,
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
            _settle([(delivery_id, _Result("late", error="abandoned in flight", attempts=0))])
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
    return _encrypted(reply, args, opened, crypto) if status == "delivered" else SUCCESS


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
