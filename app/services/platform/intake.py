"""The event inbox: verify and decrypt pushes, store each once, then dispatch to handlers.

A push is acknowledged only after it is durably stored, and a failing handler leaves the event
`failed` for the retry job instead of changing the reply. Handlers are looked up in HANDLERS by
InfoType; other modules add theirs with `register_handler` (grants registers
authorized/updateauthorized/unauthorized).

Two ways to run a handler, chosen at registration:
- a handler that only touches our database (the ticket) runs inside the transaction that
  stores the push: one commit, and the write lock is held for a few statements only;
- a handler that calls WeChat runs after the push is committed, so no write transaction is
  ever held open across HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import BinaryIO

from flask import current_app
from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from app import metrics
from app.extensions import db
from app.models import InboxEvent
from app.models.inbox import inbox_dedupe_key
from app.services import DomainError, clock
from app.services.platform import credentials, health, platforms
from app.wechat.crypto import OpenedMessage, read_envelope
from app.wechat.errors import (
    AppIdMismatch,
    CryptoError,
    DecryptError,
    MalformedMessage,
    SignatureError,
)
from app.wechat.events import Event, parse_event

log = logging.getLogger(__name__)

Handler = Callable[[Event], None]
HANDLERS: dict[str, Handler] = {}
IN_STORING_TRANSACTION: set[str] = set()  # InfoTypes whose handler only touches the database
ON_GIVE_UP: dict[str, Handler] = {}  # run once when an event's retries run out
CLAIM_TTL = timedelta(minutes=5)
SECRET_FIELDS = {"componentverifyticket", "authorizationcode", "preauthcode", "auth_code"}
REJECTION_STATUS = {
    "missing_parameters": 400,
    "malformed": 400,
    "undecryptable": 400,
    "oversize": 413,
    "bad_signature": 403,
    "wrong_appid": 403,
    "unknown_appid": 403,
}


def register_handler(
    info_type: str,
    fn: Handler,
    *,
    database_only: bool = False,
    on_give_up: Handler | None = None,
) -> Handler:
    """Route pushes of `info_type` to fn(event); `database_only` handlers (no network calls)
    run in the transaction that stores the push; `on_give_up(event)` runs when an event's
    retries run out. Handlers run as the push's platform (`platforms.using`). Returns fn."""
    HANDLERS[info_type] = fn
    if database_only:
        IN_STORING_TRANSACTION.add(info_type)
    if on_give_up is not None:
        ON_GIVE_UP[info_type] = on_give_up
    return fn


register_handler(
    "component_verify_ticket",
    credentials.handle_ticket_event,
    database_only=True,
)


class Rejected(DomainError):
    """A push we refuse: nothing stored, a 4xx with a short plain reason, counted."""

    code = "rejected"

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
        self.status = REJECTION_STATUS.get(reason, 400)


# --- receiving ------------------------------------------------------------------------------


def read_body(stream: BinaryIO, content_length: int | None) -> bytes:
    """Read at most INTAKE_MAX_BODY_BYTES; a larger body is rejected before parsing."""
    limit = current_app.config["INTAKE_MAX_BODY_BYTES"]
    if content_length is not None and content_length > limit:
        raise Rejected("oversize")
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise Rejected("oversize")
    return data


def open_push(
    body: bytes, args: Mapping[str, str], *, outer_tag: str, component_appid: str | None = None
) -> OpenedMessage:
    """Verify msg_signature and decrypt with the keys of the platform the push is for
    (`opened.receive_id`: the caller runs the rest as it, with `platforms.using`).

    The platform is the URL's `component_appid` when given; else, for platform events, the
    outer <AppId> (an unknown one is refused); else the default platform. An envelope without
    a routing tag (the WeChat SDKs' form) goes to the platform whose token signed it. An outer
    routing tag, when present, must be `outer_tag` (AppId for platform events, ToUserName for
    authorizer messages), and an AppId must be the platform's."""
    params = [args.get(name) for name in ("msg_signature", "timestamp", "nonce")]
    if not all(params) or not body:
        raise Rejected("missing_parameters")
    try:
        envelope = read_envelope(body, max_bytes=current_app.config["INTAKE_MAX_BODY_BYTES"])
    except MalformedMessage:
        raise Rejected("malformed") from None
    crypto = platforms.crypto_for(_platform_of(envelope, params, outer_tag, component_appid))
    try:
        opened = crypto.open_envelope(envelope, *params)
    except SignatureError:
        raise Rejected("bad_signature") from None
    except AppIdMismatch:
        raise Rejected("wrong_appid") from None
    except MalformedMessage:
        raise Rejected("malformed") from None
    except (DecryptError, CryptoError):
        raise Rejected("undecryptable") from None
    if opened.outer_tag not in (outer_tag, None):
        raise Rejected("malformed")
    if opened.outer_tag == "AppId" and opened.outer_value != crypto.appid:
        raise Rejected("wrong_appid")
    return opened


def _platform_of(
    envelope: Mapping[str, str], params: list, outer_tag: str, component_appid: str | None
) -> platforms.PlatformKeys:
    if component_appid is not None:
        if envelope.get("AppId", component_appid) != component_appid:
            raise Rejected("wrong_appid")  # another platform's push at this platform's URL
        return _known(component_appid)
    if outer_tag != "AppId":
        return _known(platforms.default_appid())
    if envelope.get("AppId"):
        return _known(envelope["AppId"])
    # The first platform whose token signed it (the default when none did: a bad signature).
    candidates = (platforms.keys(appid) for appid in platforms.active_appids())
    signer = next((k for k in candidates if platforms.crypto_for(k).signs(envelope, *params)), None)
    return signer or _known(platforms.default_appid())


def _known(component_appid: str) -> platforms.PlatformKeys:
    found = platforms.keys(component_appid)
    if found is None or not found.active:
        raise Rejected("unknown_appid")
    return found


def receive(
    stream: BinaryIO,
    content_length: int | None,
    args: Mapping[str, str],
    *,
    component_appid: str | None = None,
) -> str:
    """Verify, decrypt, store once and process a push for one of our platforms (the URL's
    `component_appid`, else the push's AppId); returns the outcome ("duplicate" for a retried
    push). Raises Rejected (nothing stored)."""
    try:
        body = read_body(stream, content_length)
        opened = open_push(body, args, outer_tag="AppId", component_appid=component_appid)
        event = _parse(opened)
    except Rejected as exc:
        health.count(f"rejected:events:{exc.reason}")
        raise
    with platforms.using(opened.receive_id):
        outcome = _receive_event(event, opened)
    metrics.PUSHES.labels(info_type=event.info_type[:64], outcome=outcome).inc()
    return outcome


def _receive_event(event: Event, opened: OpenedMessage) -> str:
    if event.info_type not in HANDLERS:
        stored = _store(event, opened.xml, outcome="ignored")
        return "ignored" if stored else "duplicate"
    if event.info_type in IN_STORING_TRANSACTION:
        return _store_and_handle(event, opened.xml)
    inbox_id = _store(event, opened.xml, outcome="processing")
    if inbox_id is None:
        return "duplicate"
    return _run_safely(inbox_id, event)


def _parse(opened: OpenedMessage) -> Event:
    try:
        event = parse_event(opened.xml)
    except MalformedMessage:
        raise Rejected("malformed") from None
    if event.app_id != opened.receive_id:
        raise Rejected("wrong_appid")
    return event


# Every push runs this: a prebuilt Core statement on the session's connection (same
# transaction) skips the ORM's per-call statement building.
_INSERT_INBOX_EVENT = insert(InboxEvent.__table__).returning(InboxEvent.__table__.c.id)


def _store(event: Event, raw_xml: str, *, outcome: str) -> int | None:
    """Insert into the inbox; returns its id, or None for a retried push (same dedupe key).

    "processing" rows are stored claimed by this request, which runs them next; if it crashes
    before that, the claim expires and the retry job takes over."""
    now = clock.now()
    values = {
        "info_type": event.info_type[:64],
        "authorizer_appid": event.fields.get("AuthorizerAppid") or None,
        "create_time": event.create_time,
        "dedupe_key": inbox_dedupe_key(event.dedupe_key),
        "fields": redacted(event.fields),
        "raw_xml": raw_xml,
        "received_at": now,
        "outcome": outcome,
        "attempts": 1,
        "claimed_until": now + CLAIM_TTL if outcome == "processing" else None,
        "processed_at": now if outcome in ("processed", "ignored") else None,
    }
    try:
        inbox_id = db.session.connection().execute(_INSERT_INBOX_EVENT, values).scalar_one()
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return None
    return inbox_id


def _store_and_handle(event: Event, raw_xml: str) -> str:
    """Run a database-only handler and store the push, in one transaction.

    The handler goes first, so on SQLite its reads run before the write lock is taken and the
    lock is held for a few statements only; the inbox row comes last, and a duplicate push
    fails there and rolls the handler's writes back."""
    try:
        HANDLERS[event.info_type](event)
    except Exception as exc:  # keep the push, as failed, for the retry job
        db.session.rollback()
        _log_failure(event, exc)
        inbox_id = _store(event, raw_xml, outcome="processing")
        return "duplicate" if inbox_id is None else _finish(inbox_id, "failed", _describe(exc))
    return "duplicate" if _store(event, raw_xml, outcome="processed") is None else "processed"


def redacted(fields: Mapping[str, str]) -> dict[str, str]:
    """The push's fields with tickets and codes masked (they live encrypted in raw_xml)."""
    return {k: ("***" if k.lower() in SECRET_FIELDS else v[:512]) for k, v in fields.items()}


# --- processing -----------------------------------------------------------------------------


def process_event(inbox_id: int) -> str | None:
    """Claim the event and run its handler; returns the outcome (None if someone else has it)."""
    if not _claim(inbox_id):
        return None
    raw_xml = db.session.scalar(select(InboxEvent.raw_xml).where(InboxEvent.id == inbox_id))
    db.session.commit()  # end the read, so the handler starts its own transaction
    if not raw_xml:  # purged with its account: nothing is left to do
        return _finish(inbox_id, "ignored")
    try:
        event = parse_event(raw_xml)
    except MalformedMessage as exc:
        return _finish(inbox_id, "failed", _describe(exc))
    with platforms.using(event.app_id):
        return _run(inbox_id, event)


def _run_safely(inbox_id: int, event: Event) -> str:
    """Run a freshly stored event's handler; nothing here may change the `success` reply."""
    try:
        return _run(inbox_id, event)
    except Exception:  # the event is stored; the retry job will pick it up
        db.session.rollback()
        log.exception("inbox %s: processing crashed; left for the retry job", inbox_id)
        return "failed"


def _run(inbox_id: int, event: Event) -> str:
    handler = HANDLERS.get(event.info_type)
    if handler is None:
        return _finish(inbox_id, "ignored")
    try:
        handler(event)
        # The outcome commits with the handler's own writes: done means done.
        return _finish(inbox_id, "processed")
    except Exception as exc:  # any handler failure: keep the event for the retry job
        db.session.rollback()
        _log_failure(event, exc)
        # A handler waiting on another caller (not on WeChat) is due again at once.
        waiting = getattr(exc, "retry_at_once", False)
        return _finish(inbox_id, "failed", _describe(exc), retry_at_once=waiting)


def _log_failure(event: Event, exc: Exception) -> None:
    # Type only: a traceback's locals (or the message) could hold codes or tokens.
    log.warning("inbox: %s handler failed: %s", event.info_type, type(exc).__name__)


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _claim(inbox_id: int) -> bool:
    now = clock.now()
    claimable = or_(
        InboxEvent.outcome.in_(("pending", "failed")),
        and_(InboxEvent.outcome == "processing", InboxEvent.claimed_until < now),
    )
    claimed = db.session.execute(
        update(InboxEvent)
        .where(InboxEvent.id == inbox_id, claimable)
        .values(
            outcome="processing", claimed_until=now + CLAIM_TTL, attempts=InboxEvent.attempts + 1
        )
        .returning(InboxEvent.id)
    ).first()
    db.session.commit()
    return claimed is not None


def _finish(
    inbox_id: int, outcome: str, error: str | None = None, *, retry_at_once: bool = False
) -> str:
    now = clock.now()
    values = {"outcome": outcome, "error": error, "claimed_until": None, "next_attempt_at": None}
    values["processed_at"] = None if outcome == "failed" else now
    attempts = db.session.execute(
        update(InboxEvent)
        .where(InboxEvent.id == inbox_id)
        .values(**values)
        .returning(InboxEvent.attempts)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    gave_up = outcome == "failed" and attempts >= current_app.config["INBOX_MAX_ATTEMPTS"]
    if outcome == "failed" and not gave_up:
        backoff = 0 if retry_at_once else min(3600, 30 * 2 ** (attempts - 1))
        retry_at = now + timedelta(seconds=backoff)
        db.session.execute(
            update(InboxEvent)
            .where(InboxEvent.id == inbox_id)
            .values(next_attempt_at=retry_at)
            .execution_options(synchronize_session=False)
        )
    db.session.commit()
    if gave_up:
        health.raise_alert(health.INBOX_FAILURES, last_event_id=inbox_id)
        _give_up(inbox_id)
    return outcome


def _give_up(inbox_id: int) -> None:
    raw_xml = db.session.scalar(select(InboxEvent.raw_xml).where(InboxEvent.id == inbox_id))
    event = parse_event(raw_xml) if raw_xml else None
    hook = ON_GIVE_UP.get(event.info_type) if event is not None else None
    if hook is None:
        db.session.commit()
        return
    try:
        with platforms.using(event.app_id):
            hook(event)
    except Exception as exc:  # the alert is raised already; the hook only adds detail
        db.session.rollback()
        _log_failure(event, exc)


def _process_isolated(inbox_id: int) -> str | None:
    """One event of a retry batch: its crash must not hold up the others."""
    try:
        return process_event(inbox_id)
    except Exception as exc:
        db.session.rollback()
        log.warning("inbox %s: retry crashed: %s", inbox_id, type(exc).__name__)
        return "crashed"


def retry_failed_events(limit: int = 100) -> str:
    """Job: process failed events that are due, stale claims and never-processed events."""
    now = clock.now()
    due = or_(
        and_(InboxEvent.outcome == "failed", InboxEvent.next_attempt_at <= now),
        and_(InboxEvent.outcome == "processing", InboxEvent.claimed_until < now),
        and_(InboxEvent.outcome == "pending", InboxEvent.received_at < now - timedelta(minutes=1)),
    )
    ids = list(db.session.scalars(select(InboxEvent.id).where(due).order_by("id").limit(limit)))
    db.session.commit()
    outcomes = [_process_isolated(inbox_id) for inbox_id in ids]
    summary = f"{len(ids)} due: " + ", ".join(
        f"{name}={outcomes.count(name)}" for name in sorted({o for o in outcomes if o})
    )
    for retry in _RETRIES:
        try:
            done = retry()
            summary += f"; {done}" if done else ""
        except Exception as error:  # one failing retry must not stop the inbox's
            db.session.rollback()
            log.warning("retry %s failed: %s", retry.__name__, type(error).__name__)
    return summary


_RETRIES: list[Callable[[], str]] = []


def register_retry(fn: Callable[[], str]) -> Callable[[], str]:
    """Run fn() with every inbox retry run: signals that arrived outside the inbox (a failed
    redirect exchange) are retried on the same beat as the pushes. fn returns a summary, or ""
    when it had nothing to do."""
    _RETRIES.append(fn)
    return fn
