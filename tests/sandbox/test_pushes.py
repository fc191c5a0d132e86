"""Pushes: encrypted and signed like WeChat, retried, recorded, and subject to faults."""

import time

import pytest
from defusedxml import ElementTree

from app.wechat.crypto import MessageCrypto
from app.wechat.events import (
    Authorized,
    ComponentVerifyTicket,
    Unauthorized,
    UpdateAuthorized,
    parse_event,
)


@pytest.fixture
def wired(sandbox, receiver):
    """The sandbox pushing to the receiver."""
    sandbox.configure(event_url=receiver.event_url, message_url=receiver.message_url)
    return sandbox


def crypto_for(sandbox):
    config = sandbox.app.config
    return MessageCrypto(
        config["WECHAT_TOKEN"], config["WECHAT_ENCODING_AES_KEY"], config["WECHAT_COMPONENT_APPID"]
    )


def test_ticket_push_is_encrypted_and_signed(wired, receiver):
    ticket = wired.push_ticket()
    wired.flush()
    (request,) = receiver.requests
    assert request.path == "/wechat/events"
    assert set(request.query) == {
        "signature",
        "timestamp",
        "nonce",
        "encrypt_type",
        "msg_signature",
    }
    assert request.query["encrypt_type"] == "aes"
    box = crypto_for(wired)
    box.verify_url_signature(
        request.query["signature"], request.query["timestamp"], request.query["nonce"]
    )
    outer = ElementTree.fromstring(request.body)
    assert outer.findtext("AppId") == wired.component_appid
    event = parse_event(request.open(box))
    assert isinstance(event, ComponentVerifyTicket)
    assert event.ticket == ticket
    assert event.app_id == wired.component_appid
    (delivery,) = wired.deliveries()
    assert delivery["status"] == "delivered"
    assert delivery["attempts"] == [
        {**delivery["attempts"][0], "http_status": 200, "reply": "success", "number": 1}
    ]


def test_grant_events_decrypt(wired, receiver):
    token = wired.component_token()
    first = wired.authorize(token, permission_set_ids=[1, 2])
    appid = first["account"]["appid"]
    wired.authorize(token, permission_set_ids=[1])
    wired.revoke(appid)
    wired.flush()
    box = crypto_for(wired)
    events = [parse_event(r.open(box)) for r in receiver.requests]
    assert [type(e) for e in events] == [
        ComponentVerifyTicket,
        Authorized,
        UpdateAuthorized,
        Unauthorized,
    ]
    authorized = events[1]
    assert authorized.authorizer_appid == appid
    assert authorized.authorization_code == first["auth_code"]
    assert authorized.authorization_code_expired_time == authorized.create_time + 3600
    assert authorized.pre_auth_code.startswith("preauthcode@@@")
    assert events[3].authorizer_appid == appid


@pytest.mark.parametrize("bad_reply", ["fail", '"success"', (500, "success"), ""])
def test_three_attempts_when_reply_is_not_success(wired, receiver, bad_reply):
    receiver.default_reply = bad_reply
    wired.push_ticket()
    wired.flush()
    assert len(receiver.requests) == 3
    (delivery,) = wired.deliveries()
    assert delivery["status"] == "failed"
    assert [a["number"] for a in delivery["attempts"]] == [1, 2, 3]
    expected_status = bad_reply[0] if isinstance(bad_reply, tuple) else 200
    assert {a["http_status"] for a in delivery["attempts"]} == {expected_status}


def test_retry_stops_at_first_success(wired, receiver):
    receiver.replies.extend([(503, "busy"), "success"])
    wired.push_ticket()
    wired.flush()
    (delivery,) = wired.deliveries()
    assert delivery["status"] == "delivered"
    assert [(a["http_status"], a["reply"]) for a in delivery["attempts"]] == [
        (503, "busy"),
        (200, "success"),
    ]


def test_unreachable_url_is_recorded(sandbox):
    sandbox.push_ticket()
    sandbox.flush()
    (delivery,) = sandbox.deliveries()
    assert delivery["status"] == "failed"
    assert delivery["attempts"][0]["http_status"] is None
    assert delivery["attempts"][0]["error"]


def test_pushes_do_not_block_api_answers(wired, receiver):
    receiver.default_reply = lambda request: (time.sleep(1.0), "success")[1]
    started = time.monotonic()
    wired.push_ticket()
    assert time.monotonic() - started < 0.8
    wired.flush()
    assert wired.deliveries()[0]["status"] == "delivered"


def test_sync_pushes_deliver_before_the_answer(wired, receiver):
    wired.app.config["SANDBOX_SYNC_PUSHES"] = True  # reset() restores the baseline
    wired.push_ticket()
    assert len(receiver.requests) == 1


def test_duplicate_fault(wired, receiver):
    wired.set_faults(pushes={"duplicate": True})
    wired.push_ticket()
    wired.flush()
    assert len(receiver.requests) == 2
    first, second = wired.deliveries()
    assert second["duplicate_of"] == first["id"]
    assert receiver.requests[0].open(crypto_for(wired)) == receiver.requests[1].open(
        crypto_for(wired)
    )


def test_out_of_order_fault(wired, receiver):
    wired.set_faults(pushes={"out_of_order": True})
    first = wired.push_ticket()
    time.sleep(0.2)
    assert receiver.requests == []  # held until a later push overtakes it
    second = wired.push_ticket()
    wired.flush()
    box = crypto_for(wired)
    assert [parse_event(r.open(box)).ticket for r in receiver.requests] == [second, first]


def test_delay_fault(wired, receiver):
    wired.set_faults(pushes={"delay": 1.5})  # ample margin over the check below on a slow box
    started = time.monotonic()
    wired.push_ticket()
    time.sleep(0.2)
    assert receiver.requests == []
    wired.flush()
    assert len(receiver.requests) == 1
    assert time.monotonic() - started >= 1.5


def test_paused_tickets_skip_scheduled_pushes(wired, receiver):
    from app.sandbox import grants
    from app.sandbox.models import db

    wired.set_faults(pushes={"pause_tickets": True})
    with wired.app.app_context():
        assert grants.push_ticket(scheduled=True) is None
        assert grants.push_ticket(scheduled=False) is not None
        db.session.rollback()
