"""Where alert notifications go: a WeCom group robot, email, and a signed JSON webhook.

Each channel turns a stored payload (facts, never secrets) into one message and sends it;
`send` raises ChannelError when the receiver did not accept it, so the caller retries.
"""

from __future__ import annotations

import json

import requests
from flask import current_app

from app.services import clock
from app.services.notify.webhooks import sign

WECOM = "wecom"
EMAIL = "email"
WEBHOOK = "webhook"
WECOM_MARKDOWN_MAX_BYTES = 4096  # the robot API's limit for markdown content

EVENT_WORDS = {
    "opened": ("告警", "opened"),
    "reminder": ("仍未恢复", "still open"),
    "resolved": ("已恢复", "resolved"),
    "test": ("测试通知", "test notification"),
}


class ChannelError(Exception):
    """The channel did not accept the message (retried later)."""

    def __init__(self, reason: str, status_code: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


def configured() -> list[str]:
    """The channels set up in the configuration, in a stable order."""
    config = current_app.config
    found = []
    if config.get("GRANTDESK_ALERT_WECOM_URL"):
        found.append(WECOM)
    if config.get("GRANTDESK_ALERT_EMAILS"):
        found.append(EMAIL)
    if config.get("GRANTDESK_ALERT_WEBHOOK_URL"):
        found.append(WEBHOOK)
    return found


def send(channel: str, payload: dict, *, http: requests.Session) -> int | None:
    """Deliver one notification; returns the HTTP status (None for email)."""
    if channel not in configured():
        raise ChannelError("channel no longer configured")
    if channel == WECOM:
        return _send_wecom(payload, http)
    if channel == WEBHOOK:
        return _send_webhook(payload, http)
    if channel == EMAIL:
        _send_email(payload)
        return None
    raise ChannelError(f"unknown channel {channel}")


# --- rendering ------------------------------------------------------------------------------


def headline(payload: dict) -> str:
    """'[CRITICAL] 标题 / Title — resolved' style subject line."""
    zh_word, en_word = EVENT_WORDS.get(payload["event"], ("", payload["event"]))
    title = payload["title"]
    return (
        f"[{payload['severity'].upper()}] {title['zh_CN']} / {title['en']} · {zh_word} {en_word}"
    ).strip()


def _facts(payload: dict) -> list[tuple[str, str]]:
    facts = [("状态 Status", " / ".join(EVENT_WORDS.get(payload["event"], ("", payload["event"]))))]
    if payload.get("component_appid"):
        facts.append(("平台 Platform", payload["component_appid"]))
    if payload.get("first_seen"):
        facts.append(("开始 Since", payload["first_seen"] + " UTC"))
    if payload.get("resolved_at"):
        facts.append(("恢复 Resolved", payload["resolved_at"] + " UTC"))
    if payload.get("count"):
        facts.append(("次数 Count", str(payload["count"])))
    details = payload.get("details") or {}
    if details:
        facts.append(("详情 Details", " ".join(f"{k}={v}" for k, v in sorted(details.items()))))
    return facts


def wecom_markdown(payload: dict) -> str:
    """The robot's markdown: colored headline, facts as quotes, remedy in both languages."""
    color = "info" if payload["event"] == "resolved" else "warning"
    if payload["severity"] != "critical" and payload["event"] != "resolved":
        color = "comment"
    lines = [f'## <font color="{color}">{headline(payload)}</font>']
    lines += [f"> {name}: {value}" for name, value in _facts(payload)]
    if payload["event"] != "resolved":
        lines += ["", "**处理建议 Remedy**", payload["remedy"]["zh_CN"], payload["remedy"]["en"]]
    if payload.get("health_url"):
        lines += ["", f"[平台健康 Platform health]({payload['health_url']})"]
    text = "\n".join(lines)
    while len(text.encode()) > WECOM_MARKDOWN_MAX_BYTES:
        text = text[: len(text) - 64]
    return text


def plain_text(payload: dict) -> str:
    """The email body: the same facts and remedy as plain text."""
    lines = [headline(payload), ""]
    lines += [f"{name}: {value}" for name, value in _facts(payload)]
    if payload["event"] != "resolved":
        lines += ["", "处理建议 / Remedy:", payload["remedy"]["zh_CN"], "", payload["remedy"]["en"]]
    if payload.get("health_url"):
        lines += ["", f"平台健康 / Platform health: {payload['health_url']}"]
    return "\n".join(lines) + "\n"


# --- senders --------------------------------------------------------------------------------


def _post(http: requests.Session, url: str, body: bytes, headers: dict) -> requests.Response:
    try:
        response = http.post(url, data=body, headers=headers, timeout=10)
    except requests.RequestException as error:
        raise ChannelError(type(error).__name__) from None
    if not 200 <= response.status_code < 300:
        raise ChannelError(f"HTTP {response.status_code}", response.status_code)
    return response


def _send_wecom(payload: dict, http: requests.Session) -> int:
    message = {"msgtype": "markdown", "markdown": {"content": wecom_markdown(payload)}}
    body = json.dumps(message, ensure_ascii=False).encode()
    url = current_app.config["GRANTDESK_ALERT_WECOM_URL"]
    response = _post(http, url, body, {"Content-Type": "application/json; charset=utf-8"})
    try:  # the robot answers 200 with {"errcode": 0, "errmsg": "ok"}, or a non-zero errcode
        answer = response.json()
    except ValueError:
        answer = {}  # a relay in between that answers 2xx without JSON: accepted, not resent
    errcode = answer.get("errcode", 0) if isinstance(answer, dict) else 0
    if errcode != 0:
        raise ChannelError(f"robot errcode {errcode}", response.status_code)
    return response.status_code


def _send_webhook(payload: dict, http: requests.Session) -> int:
    config = current_app.config
    body = json.dumps(
        {"event": f"alert.{payload['event']}", "alert": payload}, ensure_ascii=False, sort_keys=True
    ).encode()
    timestamp = str(int(clock.now().timestamp()))
    headers = {
        "Content-Type": "application/json",
        "X-Grantdesk-Event": f"alert.{payload['event']}",
        "X-Grantdesk-Delivery": str(payload.get("notification_id", "")),
        "X-Grantdesk-Timestamp": timestamp,
        "X-Grantdesk-Signature": sign(config["GRANTDESK_ALERT_WEBHOOK_SECRET"], timestamp, body),
    }
    return _post(http, config["GRANTDESK_ALERT_WEBHOOK_URL"], body, headers).status_code


def _send_email(payload: dict) -> None:
    try:
        from app.services.notify import mail
    except ImportError:  # the email service (#12) is not installed in this build
        raise ChannelError("email service unavailable") from None
    if not mail.enabled():
        raise ChannelError("email (SMTP) is not configured")
    mail.send(
        list(current_app.config["GRANTDESK_ALERT_EMAILS"]), headline(payload), plain_text(payload)
    )
