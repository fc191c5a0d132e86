"""Fixtures for email, password resets and merchant teams: a real SMTP server in this process."""

from __future__ import annotations

import socket
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from app.services import clock
from app.services.access import password_reset
from app.services.notify import mail
from tests import factories

SMTP_USER, SMTP_PASSWORD = "grantdesk", "smtp-secret-password"


class Mailbox:
    """What the SMTP server received; `refuse` queues SMTP replies for the next messages."""

    def __init__(self):
        self.messages: list[EmailMessage] = []
        self.envelopes = []
        self.refuse: list[str] = []
        self.logins: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self._lock:
            if self.refuse:
                return self.refuse.pop(0)
            self.envelopes.append(envelope)
            self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        login = (auth_data.login.decode(), auth_data.password.decode())
        self.logins.append(login)
        return AuthResult(success=login == (SMTP_USER, SMTP_PASSWORD))

    def only(self) -> EmailMessage:
        assert len(self.messages) == 1, [m["Subject"] for m in self.messages]
        return self.messages[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server(app):
    """An aiosmtpd server on a free port (AUTH without TLS); the app is pointed at it."""
    mailbox = Mailbox()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=_free_port(),
        authenticator=mailbox.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    app.config.update(
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=controller.port,
        MAIL_USE_TLS=False,
        MAIL_USERNAME=SMTP_USER,
        MAIL_PASSWORD=SMTP_PASSWORD,
        MAIL_FROM="Grantdesk <noreply@grantdesk.example.com>",
        PUBLIC_BASE_URL="https://portal.grantdesk.example.com",
    )
    try:
        yield mailbox
    finally:
        controller.stop()


@pytest.fixture
def moved_clock():
    yield clock
    clock.reset()


def deliver() -> int:
    """Run the worker's reset-request and mail jobs once, as the scheduler would."""
    password_reset.process_requests()
    return mail.deliver_due()


def parts(message: EmailMessage) -> tuple[str, str]:
    """The plain-text and HTML bodies of a delivered message."""
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    return text, html


@pytest.fixture
def merchant(app):
    return factories.make_merchant()
