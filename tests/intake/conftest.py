"""Helpers for intake tests: build signed pushes exactly as WeChat (and the sandbox) do."""

import time
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import DailyCounter, InboxEvent, VerifyTicket
from app.services.platform.platforms import message_crypto
from app.wechat.events import build_event_xml


def ticket_xml(ticket: str, create_time: int | None = None, appid: str | None = None) -> str:
    return build_event_xml(
        "component_verify_ticket",
        {
            "AppId": appid or message_crypto().appid,
            "CreateTime": create_time or int(time.time()),
            "ComponentVerifyTicket": ticket,
        },
    )


def sealed(inner_xml: str, *, to_user_name: str | None = None, nonce: str = "1234567"):
    """(body, query string) of an encrypted, signed push."""
    timestamp = str(int(time.time()))
    body, signature = message_crypto().encrypt_message(
        inner_xml, timestamp, nonce, to_user_name=to_user_name
    )
    query = {
        "timestamp": timestamp,
        "nonce": nonce,
        "encrypt_type": "aes",
        "msg_signature": signature,
    }
    return body, urlencode(query)


@pytest.fixture
def push(client):
    """POST an inner event XML (sealed) to /wechat/events; returns the response."""

    def post(inner_xml: str, **kwargs):
        body, query = sealed(inner_xml, **kwargs)
        return client.post(f"/wechat/events?{query}", data=body, content_type="text/xml")

    return post


def snapshot() -> tuple:
    """What intake may change: inbox rows, ticket rows and their last push."""
    db.session.rollback()
    return (
        db.session.scalar(select(func.count()).select_from(InboxEvent)),
        db.session.scalar(select(func.count()).select_from(VerifyTicket)),
        db.session.scalar(select(func.max(VerifyTicket.pushes))),
    )


def rejections() -> dict:
    db.session.rollback()
    return dict(db.session.execute(select(DailyCounter.name, DailyCounter.count)).all())
