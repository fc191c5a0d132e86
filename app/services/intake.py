"""The event inbox: verify and decrypt pushes, store each once, then dispatch to handlers.

A push is acknowledged only after it is durably stored; processing follows at once, and a
failing handler leaves the event `failed` for the retry job instead of changing the reply.
Handlers are looked up in HANDLERS by InfoType; other modules add theirs with
`register_handler` (grants registers authorized/updateauthorized/unauthorized).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import BinaryIO

from flask import current_app
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError

from app.extensions import db, message_crypto
from app.models import InboxEvent
from app.services import DomainError, clock, credentials, health
from app.wechat.crypto import OpenedMessage
from app.wechat.errors import (
    AppIdMismatch,
    CryptoError,
    DecryptError,
    MalformedMessage,
    SignatureError,
)
from app.wechat.events import Event, parse_event

log = logging.getLogger(__name__)

Handler = Callable[[Event, InboxEvent], None]
HANDLERS: dict[str, Handler] = {}
CLAIM_TTL = timedelta(minutes=5)
SECRET_FIELDS = {"componentverifyticket", "authorizationcode", "preauthcode", "auth_code"}
REJECTION_STATUS = {
    "missing_parameters": 400,
    "malformed": 400,
    "undecryptable": 400,
    "oversize": 413,
    "bad_signature": 403,
    "wrong_appid": 403,
}


def register_handler(info_type: str, fn: Handler) -> Handler:
    """Route pushes of `info_type` to fn(event, inbox_event); returns fn (usable as decorator)."""
    HANDLERS[info_type] = fn
    return fn


register_handler("component_verify_ticket", credentials.handle_ticket_event)


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


def open_push(body: bytes, args: Mapping[str, str], *, outer_tag: str) -> OpenedMessage:
    """Verify msg_signature and decrypt; the outer form must be `outer_tag` (AppId/ToUserName)."""
    params = [args.get(name) for name in ("msg_signature", "timestamp", "nonce")]
    if not all(params) or not body:
        raise Rejected("missing_parameters")
    crypto = message_crypto()
    try:
        opened = crypto.open_message(body, *params)
    except SignatureError:
        raise Rejected("bad_signature") from None
    except AppIdMismatch:
        raise Rejected("wrong_appid") from None
    except MalformedMessage:
        raise Rejected("malformed") from None
    except (DecryptError, CryptoError):
        raise Rejected("undecryptable") from None
    if opened.outer_tag != outer_tag:
        raise Rejected("malformed")
    if outer_tag == "AppId" and opened.outer_value != crypto.appid:
        raise Rejected("wrong_appid")
    return opened


def receive(
    stream: BinaryIO, content_length: int | None, args: Mapping[str, str]
) -> tuple[InboxEvent, bool]:
    """Verify, decrypt and store a push once; returns (event, newly stored). Raises Rejected."""
    try:
        opened = open_push(read_body(stream, content_length), args, outer_tag="AppId")
        event = _parse(opened.xml)
    except Rejected as exc:
        health.count(f"rejected:events:{exc.reason}")
        raise
    return store(event, opened.xml)


def _parse(xml: str) -> Event:
    try:
        event = parse_event(xml)
    except MalformedMessage:
        raise Rejected("malformed") from None
    if event.app_id != message_crypto().appid:
        raise Rejected("wrong_appid")
    return event


def store(event: Event, raw_xml: str) -> tuple[InboxEvent, bool]:
    """Insert into the inbox; a retried push (same dedupe key) returns the stored row."""
    now = clock.now()
    # Stored already claimed by this request, which processes it next (one commit saved);
    # if we crash before that, the claim expires and the retry job takes over.
    item = InboxEvent(
        info_type=event.info_type[:64],
        authorizer_appid=(event.fields.get("AuthorizerAppid") or None),
        create_time=event.create_time,
        dedupe_key=event.dedupe_key[:160],
        fields=redacted(event.fields),
        raw_xml=raw_xml,
        received_at=now,
        outcome="processing",
        attempts=1,
        claimed_until=now + CLAIM_TTL,
    )
    db.session.add(item)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        key = InboxEvent.dedupe_key == item.dedupe_key
        return db.session.scalar(select(InboxEvent).where(key)), False
    item.event = event  # parsed already: the inline run needs no read before its first write
    return item, True


def redacted(fields: Mapping[str, str]) -> dict[str, str]:
    """The push's fields with tickets and codes masked (they live encrypted in raw_xml)."""
    return {k: ("***" if k.lower() in SECRET_FIELDS else v[:512]) for k, v in fields.items()}


# --- processing -----------------------------------------------------------------------------


def process_event(inbox_id: int) -> str | None:
    """Claim the event and run its handler; returns the outcome (None if someone else has it)."""
    if not _claim(inbox_id):
        return None
    item = db.session.get(InboxEvent, inbox_id)
    event = parse_event(item.raw_xml)
    db.session.commit()  # end the read, so the handler starts its own transaction
    return _run(item, event)


def process_safely(item: InboxEvent) -> None:
    """Run a freshly stored event's handler; nothing here may change the `success` reply."""
    try:
        _run(item, item.event)
    except Exception:  # the event is stored; the retry job will pick it up
        db.session.rollback()
        log.exception("inbox %s: processing crashed; left for the retry job", item.id)


def _run(item: InboxEvent, event: Event) -> str:
    handler = HANDLERS.get(event.info_type)
    if handler is None:
        return _finish(item.id, "ignored")
    try:
        handler(event, item)
        # The outcome commits with the handler's own writes: done means done.
        return _finish(item.id, "processed")
    except Exception as exc:  # any handler failure: keep the event for the retry job
        db.session.rollback()
        # Type and message only: a traceback's locals could hold codes or tokens.
        log.warning("inbox %s (%s) failed: %s", item.id, event.info_type, type(exc).__name__)
        return _finish(item.id, "failed", f"{type(exc).__name__}: {exc}"[:500])


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


def _finish(inbox_id: int, outcome: str, error: str | None = None) -> str:
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
        retry_at = now + timedelta(seconds=min(3600, 30 * 2 ** (attempts - 1)))
        db.session.execute(
            update(InboxEvent)
            .where(InboxEvent.id == inbox_id)
            .values(next_attempt_at=retry_at)
            .execution_options(synchronize_session=False)
        )
    db.session.commit()
    if gave_up:
        health.raise_alert(health.INBOX_FAILURES, last_event_id=inbox_id)
    return outcome


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
    outcomes = [process_event(inbox_id) for inbox_id in ids]
    return f"{len(ids)} due: " + ", ".join(
        f"{name}={outcomes.count(name)}" for name in sorted({o for o in outcomes if o})
    )
