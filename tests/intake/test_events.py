"""POST /wechat/events: store once, answer exactly `success`, refuse bad input cleanly."""

import time

import pytest
from sqlalchemy import select, text

from app.extensions import db
from app.models import AuditEntry, InboxEvent
from app.services import clock
from app.services.platform import credentials, intake
from app.services.platform.platforms import message_crypto
from app.wechat.crypto import MessageCrypto
from app.wechat.events import build_event_xml
from tests.intake.conftest import rejections, sealed, snapshot, ticket_xml


def test_ticket_push_is_stored_and_answered_with_exactly_success(push):
    response = push(ticket_xml("ticket@@@first"))
    assert response.status_code == 200
    assert response.data == b"success"
    item = db.session.scalar(select(InboxEvent))
    assert (item.info_type, item.outcome) == ("component_verify_ticket", "processed")
    assert item.fields["ComponentVerifyTicket"] == "***"
    stored = db.session.execute(text("SELECT raw_xml FROM inbox_events")).scalar()
    assert "ticket@@@first" not in stored  # encrypted at rest
    assert credentials.current_ticket() == "ticket@@@first"
    actions = db.session.scalars(select(AuditEntry.action)).all()
    assert "ticket.received" in actions
    assert all("ticket@@@" not in str(e.details) for e in db.session.scalars(select(AuditEntry)))


def test_a_push_in_the_envelope_a_wechat_sdk_builds_is_accepted(client, app):
    """wechatpy's encrypt_message output posted as it is (no outer <AppId>): the signature and
    the receive-id prove it, so the ticket is stored like any other."""
    from wechatpy.crypto import WeChatCrypto

    config = app.config
    sdk = WeChatCrypto(config["WECHAT_TOKEN"], config["WECHAT_ENCODING_AES_KEY"],
                       config["WECHAT_COMPONENT_APPID"])  # fmt: skip
    timestamp, nonce = str(int(time.time())), "7654321"
    body = sdk.encrypt_message(ticket_xml("ticket@@@sdk"), nonce, timestamp)
    signature = body.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
    query = f"timestamp={timestamp}&nonce={nonce}&encrypt_type=aes&msg_signature={signature}"
    response = client.post(f"/wechat/events?{query}", data=body, content_type="text/xml")
    assert (response.status_code, response.data) == (200, b"success")
    assert credentials.current_ticket() == "ticket@@@sdk"
    tampered = client.post(f"/wechat/events?{query.replace('msg_signature=', 'msg_signature=0')}",
                           data=body, content_type="text/xml")  # fmt: skip
    assert tampered.status_code == 403


def test_a_retried_push_is_acknowledged_and_changes_nothing(push):
    xml = ticket_xml("ticket@@@same", create_time=1_700_000_000)
    assert push(xml).data == b"success"
    before = snapshot()
    for _ in range(3):  # WeChat retries with a new nonce and signature each time
        assert push(xml, nonce=str(time.time_ns())).data == b"success"
    assert snapshot() == before == (1, 1, 1)


def test_out_of_order_delivery_keeps_the_newest_ticket(push):
    now = int(time.time())
    assert push(ticket_xml("ticket@@@newer", create_time=now)).data == b"success"
    assert push(ticket_xml("ticket@@@older", create_time=now - 600)).data == b"success"
    assert credentials.current_ticket() == "ticket@@@newer"
    assert snapshot()[0] == 2  # both are in the inbox


def test_unknown_info_types_are_stored_and_acknowledged(push):
    xml = build_event_xml(
        "notify_third_fasteregister",
        {
            "AppId": message_crypto().appid,
            "CreateTime": 1_700_000_100,
            "appid": "wxnew",
            "status": 0,
        },
    )
    assert push(xml).data == b"success"
    item = db.session.scalar(select(InboxEvent))
    assert (item.info_type, item.outcome) == ("notify_third_fasteregister", "ignored")


def test_a_failing_handler_leaves_the_event_failed_for_the_retry_job(push, monkeypatch):
    calls = []

    def flaky(event):
        calls.append(event.info_type)
        if len(calls) == 1:
            raise RuntimeError("database hiccup")

    monkeypatch.setitem(intake.HANDLERS, "authorized", flaky)
    xml = build_event_xml(
        "authorized",
        {
            "AppId": message_crypto().appid,
            "CreateTime": 1_700_000_200,
            "AuthorizerAppid": "wxmerchant0001",
            "AuthorizationCode": "queryauthcode@@@secret",
            "AuthorizationCodeExpiredTime": 1_700_003_800,
            "PreAuthCode": "preauthcode@@@secret",
        },
    )
    assert push(xml).data == b"success"
    item = db.session.scalar(select(InboxEvent))
    assert (item.outcome, item.attempts) == ("failed", 1)
    assert "hiccup" in item.error and item.next_attempt_at is not None
    assert item.fields["AuthorizationCode"] == "***" and item.fields["PreAuthCode"] == "***"

    assert intake.retry_failed_events() == "0 due: "  # not due yet
    clock.advance(3600)
    try:
        assert "processed=1" in intake.retry_failed_events()
    finally:
        clock.reset()
    db.session.refresh(item)
    assert (item.outcome, item.attempts, len(calls)) == ("processed", 2, 2)
    assert intake.process_event(item.id) is None  # processed events are never run again


def _bomb() -> bytes:
    return (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        b"<xml><AppId>&lol2;</AppId><Encrypt>&lol2;</Encrypt></xml>"
    )


def _bad_requests():
    good_body, good_query = sealed(ticket_xml("ticket@@@bad"))
    # Our AppId and token, another EncodingAESKey: signed right, undecryptable.
    other = MessageCrypto("grantdesksandboxtoken", "B" * 43, message_crypto().appid)
    wrong_key_body, wrong_key_sig = other.encrypt_message(ticket_xml("ticket@@@x"), "1", "2")
    foreign_body, foreign_query = sealed(ticket_xml("ticket@@@y", appid="wxsomeoneelse0001"))
    tampered = good_query.replace("msg_signature=", "msg_signature=0")
    return {
        "bad_signature": (good_body, tampered, 403),
        "wrong_key": (
            wrong_key_body,
            f"timestamp=1&nonce=2&msg_signature={wrong_key_sig}",
            400,
        ),
        "wrong_outer_appid": (
            good_body.replace(message_crypto().appid, "wxsomeoneelse0001"),
            good_query,
            403,
        ),
        "wrong_inner_appid": (foreign_body, foreign_query, 403),
        "xml_bomb": (_bomb(), good_query, 400),
        "truncated": (good_body[: len(good_body) // 2], good_query, 400),
        "oversize": (b"<xml>" + b"A" * 70_000 + b"</xml>", good_query, 413),
        "missing_parameters": (good_body, "", 400),
        "not_xml": (b"success", good_query, 400),
    }


BAD_CASES = [
    "bad_signature",
    "wrong_key",
    "wrong_outer_appid",
    "wrong_inner_appid",
    "xml_bomb",
    "truncated",
    "oversize",
    "missing_parameters",
    "not_xml",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_gets_a_4xx_and_leaves_the_database_unchanged(client, push, case):
    assert push(ticket_xml("ticket@@@good")).data == b"success"
    before, counted = snapshot(), sum(rejections().get(k, 0) for k in rejections())
    body, query, status = _bad_requests()[case]
    response = client.post(f"/wechat/events?{query}", data=body, content_type="text/xml")
    assert response.status_code == status
    assert response.data != b"success" and len(response.data) < 40
    assert response.mimetype == "text/plain"
    assert snapshot() == before
    assert credentials.current_ticket() == "ticket@@@good"
    assert sum(rejections().values()) == counted + 1


def test_wrong_method_is_refused_and_stores_nothing(client):
    before = snapshot()
    assert client.get("/wechat/events").status_code == 405
    assert client.put("/wechat/events", data=b"<xml/>").status_code == 405
    assert snapshot() == before


def test_the_callback_is_csrf_exempt_and_sets_no_cookie(client, push):
    response = push(ticket_xml("ticket@@@cookie"))
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
