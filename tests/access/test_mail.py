"""Outgoing email: the outbox, the SMTP worker job (retries, backoff, outcomes), no secrets kept."""

import random
import smtplib

import pytest
from sqlalchemy import select, text

from app import jobs
from app.extensions import db
from app.models import OutgoingMail
from app.services import clock
from app.services.notify import mail
from tests.access.conftest import SMTP_PASSWORD, SMTP_USER, deliver, parts


def _outbox() -> list[OutgoingMail]:
    db.session.expire_all()
    return list(db.session.scalars(select(OutgoingMail).order_by(OutgoingMail.id)))


def test_send_records_and_the_worker_delivers_both_parts(app, smtp_server):
    to = ["ops@example.com", "Lead@Example.com"]
    mail.send(to, "告警 · Alert", "纯文本 plain", "<p>HTML 正文</p>")
    [row] = _outbox()
    assert row.status == "pending" and smtp_server.messages == []  # send() never talks SMTP

    assert deliver() == 1
    message = smtp_server.only()
    assert message["Subject"] == "告警 · Alert"
    assert message["From"] == "Grantdesk <noreply@grantdesk.example.com>"
    assert message["To"] == "ops@example.com, Lead@Example.com"
    assert message["Message-ID"] and message["Date"]
    assert message["Auto-Submitted"] == "auto-generated"
    assert smtp_server.envelopes[0].rcpt_tos == ["ops@example.com", "Lead@Example.com"]
    assert smtp_server.logins == [(SMTP_USER, SMTP_PASSWORD)]
    text_part, html_part = parts(message)
    assert text_part.strip() == "纯文本 plain" and html_part.strip() == "<p>HTML 正文</p>"
    [row] = _outbox()
    assert (row.status, row.attempts, row.last_error) == ("sent", 1, None)
    assert row.sent_at is not None and row.text_body is None and row.html_body is None
    assert deliver() == 0  # sent once only


def test_without_mail_server_the_message_is_recorded_as_skipped(app):
    assert not mail.enabled()
    mail.send(["someone@example.com"], "Subject", "body with https://x.example/secret-link")
    [row] = _outbox()
    assert row.status == "skipped" and row.text_body is None
    assert deliver() == 0


def test_bodies_are_encrypted_at_rest(app, smtp_server):
    link = "https://portal.example.com/invitations/very-secret-token-value"
    mail.send(["a@example.com"], "Invitation", f"open {link}", f"<a href='{link}'>open</a>")
    stored = db.session.execute(text("SELECT text_body, html_body FROM mail_outbox")).one()
    assert all("very-secret-token-value" not in value for value in stored)


def test_header_injection_and_bad_recipients_are_refused(app, smtp_server):
    with pytest.raises(mail.InvalidMessage):
        mail.send(["a@example.com\r\nBcc: evil@example.com"], "s", "t")
    with pytest.raises(mail.InvalidMessage):
        mail.send([], "s", "t")
    assert _outbox() == []
    mail.send(["a@example.com"], "Hello\r\nBcc: evil@example.com", "t")
    deliver()
    message = smtp_server.only()
    assert message["Bcc"] is None and smtp_server.envelopes[0].rcpt_tos == ["a@example.com"]


def test_temporary_failure_retries_with_backoff(app, smtp_server, moved_clock):
    smtp_server.refuse = ["451 4.3.0 try again later", "421 4.7.0 busy"]
    mail.send(["a@example.com"], "Retry me", "body")
    assert deliver() == 0
    [row] = _outbox()
    assert (row.status, row.attempts) == ("pending", 1)
    assert "451" in row.last_error
    first_delay = (row.next_attempt_at - clock.now()).total_seconds()
    assert 55 <= first_delay <= 60
    assert deliver() == 0  # not due yet: nothing is attempted
    assert _outbox()[0].attempts == 1

    clock.advance(61)
    assert deliver() == 0
    row = _outbox()[0]
    assert row.attempts == 2 and 115 <= (row.next_attempt_at - clock.now()).total_seconds() <= 120

    clock.advance(121)
    assert deliver() == 1
    assert _outbox()[0].status == "sent" and smtp_server.only()["Subject"] == "Retry me"


def test_permanent_refusal_fails_at_once(app, smtp_server):
    smtp_server.refuse = ["550 5.1.1 no such mailbox"]
    mail.send(["nobody@example.com"], "Bounce", "body")
    deliver()
    [row] = _outbox()
    assert (row.status, row.attempts) == ("failed", 1) and "550" in row.last_error


def test_unreachable_server_retries_until_the_attempts_run_out(app, smtp_server, moved_clock):
    with socket_closed() as port:
        app.config["MAIL_PORT"] = port
        mail.send(["a@example.com"], "Nobody listens", "body")
        for _attempt in range(mail.MAX_ATTEMPTS):
            deliver()
            clock.advance(mail.BACKOFF_MAX.total_seconds() + 1)
    [row] = _outbox()
    assert (row.status, row.attempts) == ("failed", mail.MAX_ATTEMPTS)
    assert row.last_error == "ConnectionRefusedError"


def test_wrong_smtp_password_is_recorded_not_logged(app, smtp_server, caplog):
    app.config.update(MAIL_PASSWORD="wrong-password-value", MAIL_TIMEOUT_SECONDS=3)
    mail.send(["a@example.com"], "Auth", "body")
    deliver()
    [row] = _outbox()
    assert row.status in ("pending", "failed") and row.last_error.startswith("SMTP")
    assert "wrong-password-value" not in caplog.text
    assert smtp_server.messages == []


def test_a_message_claimed_by_another_worker_is_not_sent_twice(app, smtp_server, moved_clock):
    mail.send(["a@example.com"], "Once", "body")
    row = _outbox()[0]
    row.lease_until = clock.now() + mail.SEND_LEASE  # another worker holds it
    db.session.commit()
    assert deliver() == 0 and smtp_server.messages == []
    clock.advance(mail.SEND_LEASE.total_seconds() + 1)  # that worker died: the lease lapses
    assert deliver() == 1 and len(smtp_server.messages) == 1


def test_randomized_failures_end_with_each_message_sent_exactly_once(app, smtp_server, moved_clock):
    rng = random.Random(12)
    subjects = [f"message {n}" for n in range(12)]
    smtp_server.refuse = [rng.choice(["451 later", "421 busy"]) for _ in range(9)]
    for subject in subjects:
        mail.send([f"{rng.randrange(1000)}@example.com"], subject, subject)
    for _round in range(6):
        deliver()
        clock.advance(mail.BACKOFF_MAX.total_seconds() + 1)
    assert sorted(m["Subject"] for m in smtp_server.messages) == sorted(subjects)
    assert {row.status for row in _outbox()} == {"sent"}


def test_the_worker_runs_it_as_the_mail_outbox_job(app, smtp_server):
    assert jobs.get_job("mail_outbox").func is mail.deliver_due
    mail.send(["a@example.com"], "Via the job", "body")
    assert jobs.run_job("mail_outbox", force=True) == "1"
    assert smtp_server.only()["Subject"] == "Via the job"


class socket_closed:
    """A port nobody listens on."""

    def __enter__(self):
        import socket

        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        return self._socket.getsockname()[1]  # bound, not listening: connections are refused

    def __exit__(self, *exc):
        self._socket.close()


def test_smtplib_is_what_sends(app):
    # The standard library's client is the one the worker uses (no hand-written protocol).
    assert mail.smtplib is smtplib


def test_templates_are_bilingual_and_escape_html(app):
    context = {
        "link": "https://portal.example.com/invitations/abc",
        "merchant_name": "<b>Tea & Co</b>",
        "provider": "Grantdesk",
        "role_zh": "管理员",
        "role_en": "administrator",
        "inviter": "",
        "inviter_en": "Your service provider",
        "ttl_hours": 72,
    }
    text_body, html_body = mail.render("invitation", **context)
    assert "<b>Tea & Co</b>" in text_body and "<b>Tea" not in html_body
    assert "&lt;b&gt;Tea &amp; Co&lt;/b&gt;" in html_body
    for body in (text_body, html_body):
        assert body.index("您好") < body.index("Hello") and context["link"] in body
