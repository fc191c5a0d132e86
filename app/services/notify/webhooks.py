"""Signed webhook notifications of grant changes to the provider, retried with backoff.

Configured by GRANTDESK_WEBHOOK_URL and GRANTDESK_WEBHOOK_SECRET; without a URL nothing is queued.
Each delivery is a POST of JSON with the headers `X-Grantdesk-Event`, `X-Grantdesk-Delivery`,
`X-Grantdesk-Timestamp` and `X-Grantdesk-Signature: sha256=<hex HMAC-SHA256 of
"<timestamp>.<body>" with the secret>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import timedelta

import requests
from flask import current_app

from app.current_platform import account_ref
from app.extensions import db
from app.models import WebhookDelivery
from app.services import clock
from app.services.notify import notices, outbox
from app.services.platform import platforms

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)
DELIVERY_LEASE = timedelta(seconds=60)


def _configured() -> bool:
    return bool(current_app.config.get("GRANTDESK_WEBHOOK_URL"))


def enqueue(event: str, payload: dict, *, appid: str | None = None) -> WebhookDelivery | None:
    """Queue a notification in the caller's transaction (no-op without a webhook URL)."""
    if not _configured():
        return None
    delivery = WebhookDelivery(
        event=event,
        payload={"event": event, "occurred_at": clock.now().isoformat(), "data": payload},
        appid_hash=account_ref(appid) if appid else None,
        created_at=clock.now(),
        next_attempt_at=clock.now(),
    )
    db.session.add(delivery)
    return delivery


def notify_grant_change(authorizer, change) -> None:
    """Queue grant.<kind> for a GrantChange (authorized, updated, needs_reauthorization, ...)."""
    grant = authorizer.grant
    enqueue(
        f"grant.{change.kind}",
        {
            "component_appid": authorizer.component_appid,
            "authorizer_appid": authorizer.appid,
            "merchant_id": authorizer.merchant_id,
            "status": grant.status.value if grant else None,
            "permission_set_ids": list(change.set_ids),
            "added": list(change.added),
            "removed": list(change.removed),
        },
        appid=authorizer.appid,
    )
    db.session.commit()
    if change.kind == notices.NEEDS_REAUTHORIZATION:
        notices.send_account_notice(
            notices.NEEDS_REAUTHORIZATION,
            merchant_id=authorizer.merchant_id,
            appid=authorizer.appid,
            name=authorizer.nick_name,
            account_id=authorizer.id,
        )


def notify_revoked(appid: str, *, merchant_id: int | None, reason: str) -> None:
    """Queue grant.revoked (the appid is scrubbed from the log once delivered)."""
    enqueue(
        "grant.revoked",
        {
            "component_appid": platforms.current_appid(),
            "authorizer_appid": appid,
            "merchant_id": merchant_id,
            "reason": reason,
        },
        appid=appid,
    )
    if reason == "unauthorized":  # revoked on WeChat (a requested deletion needs no notice)
        notices.send_account_notice(
            notices.REVOKED, merchant_id=merchant_id, appid=appid, name=None, account_id=None
        )


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for a body."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def deliver_due(*, limit: int = 50, session: requests.Session | None = None) -> int:
    """Send due deliveries (each under a short lease); returns how many were delivered."""
    if not _configured():
        return 0
    http = session or requests.Session()
    rows = outbox.claim_due(WebhookDelivery, DELIVERY_LEASE, limit=limit)
    return sum(_attempt(row, http) for row in rows)


def _attempt(delivery: WebhookDelivery, http: requests.Session) -> int:
    config = current_app.config
    body = json.dumps(delivery.payload, ensure_ascii=False, sort_keys=True).encode()
    timestamp = str(int(clock.now().timestamp()))
    headers = {
        "Content-Type": "application/json",
        "X-Grantdesk-Event": delivery.event,
        "X-Grantdesk-Delivery": str(delivery.id),
        "X-Grantdesk-Timestamp": timestamp,
        "X-Grantdesk-Signature": sign(config["GRANTDESK_WEBHOOK_SECRET"], timestamp, body),
    }
    delivery.attempts += 1
    try:
        response = http.post(
            config["GRANTDESK_WEBHOOK_URL"], data=body, headers=headers, timeout=10
        )
        delivery.last_status_code, delivery.last_error = response.status_code, None
        ok = 200 <= response.status_code < 300
    except requests.RequestException as error:
        delivery.last_status_code, delivery.last_error = None, type(error).__name__
        ok = False
    delivery.lease_until = None
    if ok:
        delivery.status, delivery.delivered_at = "delivered", clock.now()
        if delivery.event == "grant.revoked":  # keep no appid of a revoked account
            delivery.payload = {"event": delivery.event, "delivered": True}
    elif delivery.attempts >= MAX_ATTEMPTS:
        delivery.status = "failed"
    else:
        delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (delivery.attempts - 1))
        delivery.next_attempt_at = clock.now() + delay
    db.session.commit()
    return int(ok)
