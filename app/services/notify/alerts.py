"""Alert notifications: once when an alert opens, reminders while it stays open, "resolved".

The worker job `alert_notifications` compares `health_alerts` with the delivery log and queues
what is due, one row per channel under a unique key (so any number of processes and hosts
notify exactly once), then sends due rows under short leases with retries and backoff.
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import datetime, timedelta

import requests
from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.logging import configured_secrets, mask_secrets
from app.models import AlertNotification, HealthAlert
from app.services import clock
from app.services.notify import catalog, channels, outbox
from app.services.platform import platforms

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)
DELIVERY_LEASE = timedelta(seconds=60)
# Detail keys that could hold a credential are dropped whatever their value.
_SECRET_KEY = re.compile(r"token|secret|ticket|password|auth_?code|key", re.I)


# --- what to send ---------------------------------------------------------------------------


def safe_details(details: dict | None) -> dict:
    """Alert details fit for a notification: scalars only, no credential-like key or value."""
    secrets = configured_secrets(current_app.config)
    safe = {}
    for key, value in (details or {}).items():
        if _SECRET_KEY.search(key) or not isinstance(value, str | int | float | bool | None):
            continue
        if isinstance(value, str):
            value = mask_secrets(value, secrets)[:200]
        safe[key] = value
    return safe


def _iso(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else None


def _health_url() -> str:
    return current_app.config["PUBLIC_BASE_URL"].rstrip("/") + "/staff/health"


def payload_for(alert: HealthAlert, event: str) -> dict:
    """The stored facts of one notification (rendered per channel at send time)."""
    kind = catalog.describe(alert.kind)
    return {
        "kind": alert.kind,
        "component_appid": alert.component_appid,
        "severity": kind.severity,
        "event": event,
        "title": {"zh_CN": kind.title_zh, "en": kind.title_en},
        "remedy": {"zh_CN": kind.remedy_zh, "en": kind.remedy_en},
        "first_seen": _iso(alert.first_seen),
        "last_seen": _iso(alert.last_seen),
        "resolved_at": _iso(alert.resolved_at),
        "count": alert.count,
        "details": safe_details(alert.details),
        "health_url": _health_url(),
    }


def _key(alert: HealthAlert, event: str, channel: str) -> str:
    # The default platform's keys keep their pre-#16 form, so an upgrade sends nothing twice.
    kind = alert.kind
    if alert.component_appid and not platforms.is_default(alert.component_appid):
        kind = f"{kind}@{alert.component_appid}"
    return f"{kind}|{alert.first_seen.isoformat(timespec='seconds')}|{event}|{channel}"


def _queue(key: str, kind: str, event: str, channel: str, payload: dict) -> bool:
    """Insert one notification unless its key exists (another process queued it)."""
    now = clock.now()
    row = AlertNotification(
        dedupe_key=key,
        kind=kind,
        event=event.split(":")[0],
        channel=channel,
        payload=payload,
        created_at=now,
        next_attempt_at=now,
    )
    try:
        with db.session.begin_nested():
            db.session.add(row)
    except IntegrityError:
        return False
    return True


def _queued(key: str) -> bool:
    return db.session.scalar(select(AlertNotification.id).where(_key_is(key))) is not None


def _key_is(key: str):
    return AlertNotification.dedupe_key == key


def plan() -> int:
    """Queue what is due: opened, a reminder per interval while open, resolved; returns count."""
    wanted = channels.configured()
    if not wanted:
        return 0
    remind = timedelta(minutes=max(1, int(current_app.config["GRANTDESK_ALERT_REMIND_MINUTES"])))
    queued = 0
    for alert in db.session.scalars(select(HealthAlert).order_by(HealthAlert.id)):
        for channel in wanted:
            event = _due_event(alert, channel, remind)
            if event and _queue(
                _key(alert, event, channel),
                alert.kind,
                event,
                channel,
                payload_for(alert, event.split(":")[0]),
            ):
                queued += 1
    db.session.commit()
    return queued


def _due_event(alert: HealthAlert, channel: str, remind: timedelta) -> str | None:
    opened = _queued(_key(alert, "opened", channel))
    if alert.resolved_at is not None:
        # "resolved" only follows an "opened" of the same occurrence.
        return "resolved" if opened and not _queued(_key(alert, "resolved", channel)) else None
    if not opened:
        return "opened"
    number = int((clock.now() - alert.first_seen) / remind)
    if number >= 1 and not _queued(_key(alert, f"reminder:{number}", channel)):
        return f"reminder:{number}"
    return None


def queue_test() -> list[int]:
    """Queue a test notification to every configured channel; returns the new row ids."""
    now = clock.now()
    sample = HealthAlert(
        kind="test",
        component_appid=platforms.default_appid(),
        first_seen=now,
        last_seen=now,
        count=1,
        details={},
    )
    payload = payload_for(sample, "test")
    payload.update(
        severity=catalog.WARNING,
        title={"zh_CN": "Grantdesk 测试通知", "en": "Grantdesk test notification"},
        remedy={
            "zh_CN": "这是一条测试通知，无需处理。收到即表示该通知渠道工作正常。",
            "en": "This is a test; nothing to do. Receiving it means this channel works.",
        },
    )
    ids = []
    token = uuid.uuid4().hex[:12]
    for channel in channels.configured():
        if _queue(f"test|{token}|{channel}", "test", "test", channel, payload):
            ids.append(
                db.session.scalar(
                    select(AlertNotification.id).where(_key_is(f"test|{token}|{channel}"))
                )
            )
    db.session.commit()
    return ids


# --- sending --------------------------------------------------------------------------------


def deliver_due(*, limit: int = 50, only: list[int] | None = None) -> int:
    """Send due notifications (each under a short lease); returns how many were accepted."""
    where = () if only is None else (AlertNotification.id.in_(only),)
    http = requests.Session()
    rows = outbox.claim_due(AlertNotification, DELIVERY_LEASE, limit=limit, where=where)
    return sum(_attempt(row, http) for row in rows)


def _attempt(row: AlertNotification, http: requests.Session) -> int:
    row.attempts += 1
    try:
        row.last_status_code = channels.send(
            row.channel, {**row.payload, "notification_id": row.id}, http=http
        )
        row.last_error, ok = None, True
    except channels.ChannelError as error:
        row.last_status_code, row.last_error, ok = error.status_code, error.reason[:200], False
    except Exception as error:  # a broken channel must not stop the others
        log.warning("alert notification %s via %s failed: %s", row.id, row.channel, error)
        row.last_status_code, row.last_error, ok = None, type(error).__name__, False
    row.lease_until = None
    if ok:
        row.status, row.delivered_at = "delivered", clock.now()
    elif row.attempts >= MAX_ATTEMPTS:
        row.status = "failed"
    else:
        row.next_attempt_at = clock.now() + min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (row.attempts - 1))
    db.session.commit()
    return int(ok)


def notify_job() -> str:
    """Job: queue due notifications and send them."""
    queued = plan()
    sent = deliver_due()
    return f"queued={queued} sent={sent}"


def recent(limit: int = 20) -> list[AlertNotification]:
    """The latest notifications, newest first (the health page's delivery log)."""
    query = select(AlertNotification).order_by(AlertNotification.id.desc()).limit(limit)
    return list(db.session.scalars(query))
