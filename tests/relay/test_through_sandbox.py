"""The whole chain over real HTTP: the sandbox plays WeChat (an authorized account, a user's
message sealed with the platform's keys, WeChat's 5 s timeout and retries), the portal relays it,
and a business service written with wechatpy's plaintext-mode helpers answers it."""

import threading
import time

import xmltodict
from sqlalchemy import select

from app.extensions import db
from app.models import RelayDelivery
from app.services.relay import outbox, routes
from tests.relay.conftest import json_body, json_signature_ok, wechatpy_text_handler

TOKEN = "sandboxrelay2024"
SECRET = "sandbox-relay-json-secret-0123"


def authorized_account(sandbox) -> dict:
    sandbox.push_ticket()
    sandbox.flush()
    account = sandbox.authorize(sandbox.component_token())["account"]
    sandbox.flush()
    return account


def test_a_sandbox_users_text_is_answered_by_a_wechatpy_handler(sandbox, live_portal, services):
    behave, replies = wechatpy_text_handler(TOKEN)
    service = services(behave)
    account = authorized_account(sandbox)
    live_portal.call(routes.create_route, name="客服 reply", url=service.url,
                     format="wechat-xml", mode="reply", token=TOKEN)  # fmt: skip

    result = sandbox.user_message(account["appid"], "text", content="营业时间？")

    assert (result["attempts"], result["http_status"], result["error"]) == (1, 200, None)
    assert result["reply_xml"] == replies[str(result["msg_id"])]
    reply = xmltodict.parse(result["reply_xml"])["xml"]
    assert reply["Content"] == "收到 got: 营业时间？"
    assert reply["FromUserName"] == account["user_name"]
    assert service.calls() == 1


def test_a_slow_handler_gets_success_inside_wechats_five_seconds(
    sandbox, live_portal, services, monkeypatch
):
    behave, _ = wechatpy_text_handler(TOKEN, delay=lambda: 6.0)
    service = services(behave)
    account = authorized_account(sandbox)
    monkeypatch.setitem(live_portal.app.config, "RELAY_REPLY_TIMEOUT", 1.0)
    live_portal.call(routes.create_route, name="slow", url=service.url,
                     format="wechat-xml", mode="reply", token=TOKEN)  # fmt: skip

    result = sandbox.user_message(account["appid"], "text", content="hello?")

    # Answered `success` within the budget: WeChat saw no timeout and sent no retry.
    assert (result["attempts"], result["http_status"], result["reply_xml"]) == (1, 200, None)
    assert result["reply_ms"] < 2500
    assert service.calls() == 1

    def status():
        db.session.rollback()
        return db.session.scalar(select(RelayDelivery.status))

    assert live_portal.wait_for(lambda: live_portal.call(status) == "late")


def test_an_async_json_route_receives_a_sandbox_event_signed(sandbox, live_portal, services):
    received = threading.Event()

    def behave(seen):
        received.set()
        return 204, ""

    service = services(behave)
    account = authorized_account(sandbox)
    live_portal.call(routes.create_route, name="events", url=service.url, format="json",
                     mode="async", secret=SECRET, msg_types=["event.subscribe"])  # fmt: skip

    result = sandbox.user_message(account["appid"], "event", event="subscribe")
    assert (result["http_status"], result["reply_xml"]) == (200, None)
    deadline = time.monotonic() + 10
    while not received.is_set() and time.monotonic() < deadline:
        live_portal.call(outbox.deliver_due)
        received.wait(0.1)

    (seen,) = service.seen
    assert json_signature_ok(SECRET, seen)
    document = json_body(seen)
    assert document["authorizer_appid"] == account["appid"]
    assert document["component_appid"] == live_portal.app.config["WECHAT_COMPONENT_APPID"]
    assert document["message"]["Event"] == "subscribe"
    assert document["message"]["ToUserName"] == account["user_name"]
