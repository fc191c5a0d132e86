"""Outgoing email: `send()` records a message in the outbox and returns; the `mail_outbox` job
sends due messages over SMTP (MAIL_* settings) with retries and backoff.

Without MAIL_SERVER a message is recorded as `skipped`, and callers show their link to whoever
created it instead. Bodies are stored encrypted (they may carry invitation or reset links) and
dropped once the message is final; recipients, subject and outcome stay for the record.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from flask import current_app

from app.extensions import db
from app.models import OutgoingMail
from app.services import DomainError, clock
from app.services.notify import outbox

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BACKOFF_BASE = timedelta(seconds=60)
BACKOFF_MAX = timedelta(hours=1)
SEND_LEASE = timedelta(seconds=120)
SUBJECT_MAX = 255


class InvalidMessage(DomainError):
    code = "invalid_message"


def enabled() -> bool:
    """Whether messages are really sent (MAIL_SERVER is configured)."""
    return bool(current_app.config.get("MAIL_SERVER"))


def send(to: list[str], subject: str, text: str, html: str | None = None) -> None:
    """Record an outgoing message (committed) and return at once; the worker sends it."""
    recipients = [address.strip() for address in to if address and address.strip()]
    if not recipients or any("\n" in a or "\r" in a or "@" not in a for a in recipients):
        raise InvalidMessage(reason="recipients")
    # A header line break would let a subject inject headers; one line, bounded.
    subject = " ".join(subject.split())[:SUBJECT_MAX]
    now = clock.now()
    message = OutgoingMail(
        to_addresses=recipients,
        subject=subject,
        text_body=text,
        html_body=html,
        status="pending" if enabled() else "skipped",
        created_at=now,
        next_attempt_at=now,
    )
    if message.status == "skipped":
        message.text_body = message.html_body = None
    db.session.add(message)
    db.session.commit()


def render(name: str, **context) -> tuple[str, str]:
    """The plain-text and HTML bodies of `email/<name>.txt` and `.html` (bilingual).

    Rendered straight from the Jinja environment: no request or page context processors, so
    the worker and CLI commands render the same bytes a request would.
    """
    env = current_app.jinja_env
    return (
        env.get_template(f"email/{name}.txt").render(**context),
        env.get_template(f"email/{name}.html").render(**context),
    )


def send_template(to: list[str], subject: str, name: str, **context) -> None:
    """Render a bilingual template pair and send it."""
    text, html = render(name, **context)
    send(to, subject, text, html)


# --- the worker side ---------------------------------------------------------------------------


def deliver_due(*, limit: int = 50) -> int:
    """Send due messages, each under a short lease; returns how many were sent."""
    if not enabled():
        return 0
    return sum(_attempt(row) for row in outbox.claim_due(OutgoingMail, SEND_LEASE, limit=limit))


def _attempt(message: OutgoingMail) -> int:
    message.attempts += 1
    permanent = False
    try:
        _smtp_send(_build(message))
        error = None
    except smtplib.SMTPResponseException as exc:
        # 5xx is the server's final word (unknown mailbox, refused sender): retrying won't help.
        permanent = exc.smtp_code >= 500
        error = f"{type(exc).__name__} {exc.smtp_code}"
    except smtplib.SMTPRecipientsRefused as exc:
        permanent = all(code >= 500 for code, _msg in exc.recipients.values())
        error = "SMTPRecipientsRefused " + ",".join(
            str(code) for code, _msg in exc.recipients.values()
        )
    except (OSError, smtplib.SMTPException) as exc:
        error = type(exc).__name__
    message.lease_until = None
    message.last_error = error
    if error is None:
        message.status, message.sent_at = "sent", clock.now()
        message.text_body = message.html_body = None
    elif permanent or message.attempts >= MAX_ATTEMPTS:
        message.status = "failed"
        log.warning("mail %s failed for good: %s", message.id, error)
    else:
        delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (message.attempts - 1))
        message.next_attempt_at = clock.now() + delay
        log.info("mail %s attempt %s failed (%s), retry in %s", message.id, message.attempts,
                 error, delay)  # fmt: skip
    db.session.commit()
    return int(error is None)


def _build(message: OutgoingMail) -> EmailMessage:
    config = current_app.config
    email = EmailMessage()
    email["Subject"] = message.subject
    email["From"] = config["MAIL_FROM"]
    email["To"] = ", ".join(message.to_addresses)
    email["Date"] = formatdate(localtime=False)
    email["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to us
    email["Message-ID"] = make_msgid(domain=config["MAIL_FROM"].rpartition("@")[2].strip(" >"))
    email.set_content(message.text_body or "")
    if message.html_body:
        email.add_alternative(message.html_body, subtype="html")
    return email


def _smtp_send(email: EmailMessage) -> None:
    config = current_app.config
    host, port = config["MAIL_SERVER"], int(config["MAIL_PORT"])
    timeout = config.get("MAIL_TIMEOUT_SECONDS", 20)
    context = ssl.create_default_context()
    if port == 465:  # implicit TLS (SMTPS)
        smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
    else:
        smtp = smtplib.SMTP(host, port, timeout=timeout)
    with smtp:
        if config.get("MAIL_USE_TLS") and port != 465:
            smtp.starttls(context=context)
        if config.get("MAIL_USERNAME"):
            smtp.login(config["MAIL_USERNAME"], config.get("MAIL_PASSWORD") or "")
        smtp.send_message(email)
