"""The message URL relays to the provider's services over real HTTP: WeChat played with wechatpy's
crypto, services written with wechatpy's plaintext-mode helpers, the portal on a real port."""

import json
import threading
import time

import pytest
import xmltodict
from sqlalchemy import select, text

from app.extensions import db
from app.models import RelayDelivery, RelayMessage
from app.models.grants import GrantStatus
from app.services.relay import inbound, routes
from tests.relay.conftest import (
    counts,
    deliveries,
    event_xml,
    json_body,
    json_signature_ok,
    make_account,
    settled,
    text_xml,
    wechatpy_text_handler,
)

TOKEN = "relaytoken2024"
SECRET = "relay-json-secret-0123456789"


def reply_route(service, **overrides):
    values = {"name": "reply", "url": service.url, "format": "wechat-xml", "mode": "reply",
              "token": TOKEN, **overrides}  # fmt: skip
    return routes.create_route(**values)


def test_a_wechatpy_handler_answers_through_the_relay(live_portal, wechat, services, merchant):
    behave, replies = wechatpy_text_handler(TOKEN)
    service = services(behave)
    account = make_account(merchant)
    reply_route(service, merchant_id=merchant.id)
    inner = text_xml(account, "订单 42?", msg_id="7001")

    response = wechat.send(account.appid, inner)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/xml")
    assert wechat.open_reply(response.text) == replies["7001"]
    reply = xmltodict.parse(replies["7001"])["xml"]
    assert (reply["ToUserName"], reply["FromUserName"]) == ("o_user_0001", account.user_name)
    assert reply["Content"] == "收到 got: 订单 42?"
    # The handler got WeChat's plaintext protocol: the decrypted XML and openid in the query.
    (seen,) = service.seen
    assert seen["body"].decode() == inner
    assert seen["query"]["openid"] == "o_user_0001"
    (delivery,) = deliveries()
    assert (delivery.mode, delivery.status, delivery.attempts) == ("reply", "delivered", 1)
    assert delivery.reply == replies["7001"] and delivery.duration_ms is not None
    assert delivery.last_status_code == 200 and delivery.delivered_at is not None
    # Payload and reply are encrypted at rest.
    raw = db.session.execute(text("SELECT payload FROM relay_messages")).scalar_one()
    assert "订单" not in raw and "o_user_0001" not in raw
    raw_reply = db.session.execute(text("SELECT reply FROM relay_deliveries")).scalar_one()
    assert "got" not in raw_reply
    message = db.session.scalar(select(RelayMessage))
    assert (message.msg_type, message.payload) == ("text", inner)


def test_a_message_in_the_envelope_a_wechat_sdk_builds_is_relayed(
    live_portal, wechat, services, merchant
):
    """A harness playing WeChat with wechatpy may POST encrypt_message's output as it is
    (<Encrypt>, <MsgSignature>, <TimeStamp>, <Nonce>, no <ToUserName>): relayed and answered."""
    behave, replies = wechatpy_text_handler(TOKEN)
    service = services(behave)
    account = make_account(merchant)
    reply_route(service, merchant_id=merchant.id)
    inner = text_xml(account, "hello", msg_id="7101")

    response = wechat.send(account.appid, inner, sdk_envelope=True)

    assert response.status_code == 200
    assert wechat.open_reply(response.text) == replies["7101"]
    assert [seen["body"].decode() for seen in service.seen] == [inner]
    assert [d.status for d in deliveries()] == ["delivered"]


def test_the_same_through_json(live_portal, wechat, services, merchant):
    def behave(seen):
        assert json_signature_ok(SECRET, seen)
        message = json_body(seen)["message"]
        return 200, json.dumps(
            {"reply": {"MsgType": "text", "Content": "echo " + message["Content"]}}
        )

    service = services(behave)
    account = make_account(merchant)
    route = routes.create_route(name="json", url=service.url, format="json", mode="reply",
                                secret=SECRET, authorizer_appid=account.appid)  # fmt: skip
    response = wechat.send(account.appid, text_xml(account, "hi", msg_id="7002"))

    reply = xmltodict.parse(wechat.open_reply(response.text))["xml"]
    assert reply["MsgType"] == "text" and reply["Content"] == "echo hi"
    assert (reply["ToUserName"], reply["FromUserName"]) == ("o_user_0001", account.user_name)
    (seen,) = service.seen
    document = json_body(seen)
    (delivery,) = deliveries()
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["x-grantdesk-event"] == "relay.message"
    assert headers["x-grantdesk-delivery"] == str(delivery.id)
    assert document["id"] == delivery.message_id
    assert document["authorizer_appid"] == account.appid
    assert document["merchant_id"] == merchant.id
    assert document["component_appid"] == live_portal.app.config["WECHAT_COMPONENT_APPID"]
    assert document["message"]["MsgId"] == "7002"
    assert delivery.route_id == route.id and delivery.status == "delivered"


@pytest.mark.parametrize("first_elsewhere", [False, True], ids=["same-process", "other-process"])
def test_a_retry_waits_for_the_first_reply_and_the_handler_sees_one_request(
    live_portal, wechat, services, merchant, monkeypatch, first_elsewhere
):
    if first_elsewhere:  # no process-local signal: the retry polls the delivery row
        monkeypatch.setattr(inbound, "_hold", lambda delivery_id: None)
    behave, replies = wechatpy_text_handler(TOKEN, delay=lambda: 0.8)
    service = services(behave)
    account = make_account(merchant)
    reply_route(service)
    inner = text_xml(account, "once", msg_id="7003")
    answers = {}

    def send(name):
        answers[name] = wechat.send(account.appid, inner)

    first = threading.Thread(target=send, args=("first",))
    first.start()
    deadline = time.monotonic() + 3
    while service.calls() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    send("retry_in_flight")  # WeChat's retry while the handler is still working
    first.join()
    send("retry_after")
    assert service.calls() == 1
    plain = {name: wechat.open_reply(response.text) for name, response in answers.items()}
    assert set(plain.values()) == {replies["7003"]}
    # Encrypted anew for each answer (fresh random prefix): the bodies differ.
    assert len({response.text for response in answers.values()}) == 3
    assert answers["retry_after"].seconds < 0.5
    assert counts() == (1, 1)


def test_a_slow_handler_past_the_budget_gets_success_and_late(
    live_portal, wechat, services, merchant
):
    live_portal.app.config["RELAY_REPLY_TIMEOUT"] = 1.0
    behave, _ = wechatpy_text_handler(TOKEN, delay=lambda: 2.0)
    service = services(behave)
    account = make_account(merchant)
    reply_route(service)

    response = wechat.send(account.appid, text_xml(account, "slow", msg_id="7004"))

    assert (response.status_code, response.text) == (200, "success")
    assert 0.9 < response.seconds < 1.0 + 0.4
    (delivery,) = deliveries()
    assert (delivery.status, delivery.reply, delivery.last_error) == ("late", None, "timeout")
    # The retry after the budget: the handler is not called again.
    retry = wechat.send(account.appid, text_xml(account, "slow", msg_id="7004"))
    assert retry.text == "success" and service.calls() == 1


@pytest.mark.parametrize(
    "answer, error",
    [
        (lambda m: (200, f"<xml><ToUserName>someone_else</ToUserName><FromUserName>{m.target}"
                         "</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType>"
                         "<Content>secret words</Content></xml>"), "not addressed"),
        (lambda m: (200, "<xml><oops"), "not well-formed"),
        (lambda m: (500, "boom"), "HTTP 500"),
    ],
    ids=["misaddressed", "malformed", "http-500"],
)  # fmt: skip
def test_an_invalid_reply_gets_success_and_failed(
    live_portal, wechat, services, merchant, answer, error
):
    behave, _ = wechatpy_text_handler(TOKEN, answer=answer)
    services_made = services(behave)
    account = make_account(merchant)
    reply_route(services_made)

    response = wechat.send(account.appid, text_xml(account, "x", msg_id="7005"))

    assert (response.status_code, response.text) == (200, "success")
    (delivery,) = deliveries()
    assert delivery.status == "failed" and error in delivery.last_error
    assert "secret words" not in delivery.last_error and delivery.reply is None


def test_a_service_that_is_down_gets_failed(live_portal, wechat, merchant):
    account = make_account(merchant)
    routes.create_route(name="down", url="http://127.0.0.1:9/wechat", format="wechat-xml",
                        mode="reply")  # fmt: skip
    response = wechat.send(account.appid, text_xml(account, "x"))
    assert response.text == "success"
    (delivery,) = deliveries()
    assert (delivery.status, delivery.last_error) == ("failed", "connection error")


def test_merchant_scopes_never_cross(live_portal, wechat, services):
    from tests import factories

    merchants = [factories.make_merchant(), factories.make_merchant()]
    accounts = [make_account(m) for m in merchants]
    seen_by = []
    for merchant in merchants:
        behave, _ = wechatpy_text_handler(TOKEN)
        service = services(behave)
        seen_by.append(service)
        reply_route(service, merchant_id=merchant.id, name=f"reply {merchant.id}")
        routes.create_route(name=f"async {merchant.id}", url=service.url, format="json",
                            mode="async", merchant_id=merchant.id)  # fmt: skip
    for n, account in enumerate(accounts):
        assert wechat.send(account.appid, text_xml(account, f"for {n}")).status_code == 200

    for n, service in enumerate(seen_by):
        (seen,) = service.seen
        assert f"for {n}".encode() in seen["body"]
    for delivery in deliveries():
        route = db.session.get(type(delivery.route), delivery.route_id)
        assert route.merchant_id == accounts_merchant(delivery.authorizer_id, accounts)


def accounts_merchant(authorizer_id, accounts):
    return next(a.merchant_id for a in accounts if a.id == authorizer_id)


def test_async_routes_store_pending_deliveries_and_answer_at_once(
    live_portal, wechat, services, merchant
):
    service = services(lambda seen: (200, "success"))
    account = make_account(merchant)
    route = routes.create_route(name="async", url=service.url, format="wechat-xml", mode="async",
                                msg_types=["event"])  # fmt: skip
    inner = event_xml(account, "SCAN", EventKey="42")
    response = wechat.send(account.appid, inner)
    assert response.text == "success" and service.calls() == 0
    (delivery,) = deliveries()
    assert (delivery.route_id, delivery.mode, delivery.status) == (route.id, "async", "pending")
    message = db.session.get(RelayMessage, delivery.message_id)
    assert message.msg_type == "event.scan"
    # The same event again (WeChat's retry: same sender and CreateTime) is stored once.
    assert wechat.send(account.appid, inner).text == "success"
    assert counts() == (1, 1)


@pytest.mark.parametrize("case", ["unknown", "needs_reauthorization", "misaddressed", "no_route"])
def test_messages_reaching_no_route_are_not_stored(live_portal, wechat, services, merchant, case):
    behave, _ = wechatpy_text_handler(TOKEN)
    service = services(behave)
    status = GrantStatus.NEEDS_REAUTHORIZATION if case == "needs_reauthorization" else None
    account = make_account(merchant, **({"status": status} if status else {}))
    reply_route(service, msg_types=["image"] if case == "no_route" else [])
    appid = "wxnotheld00000001" if case == "unknown" else account.appid
    to_user = "gh_someone_else" if case == "misaddressed" else account.user_name

    response = wechat.send(appid, text_xml(account, to_user=to_user))

    assert (response.status_code, response.text) == (200, "success")
    assert counts() == (0, 0) and service.calls() == 0


@pytest.mark.parametrize("case", ["bad_signature", "malformed", "wrong_key"])
def test_bad_requests_get_4xx_and_reach_no_route(live_portal, wechat, services, merchant, case):
    behave, _ = wechatpy_text_handler(TOKEN)
    service = services(behave)
    account = make_account(merchant)
    reply_route(service)
    inner = text_xml(account)
    body, params = wechat.seal(inner, account.user_name)
    if case == "bad_signature":
        params["msg_signature"] = "0" * 40
    elif case == "malformed":
        body = body.replace("</xml>", "<Encrypt>again</Encrypt></xml>")
    else:
        from wechatpy.crypto import WeChatCrypto

        other = WeChatCrypto(live_portal.app.config["WECHAT_TOKEN"], "b" * 43,
                             live_portal.app.config["WECHAT_COMPONENT_APPID"])  # fmt: skip
        wechat.crypto, saved = other, wechat.crypto
        body, params = wechat.seal(inner, account.user_name)
        wechat.crypto = saved

    response = wechat.send(account.appid, inner, params=params, body=body)

    assert 400 <= response.status_code < 500
    assert counts() == (0, 0) and service.calls() == 0


def test_reply_deliveries_are_marked_abandoned_when_their_request_died(
    live_portal, wechat, services, merchant, portal_clock
):
    behave, _ = wechatpy_text_handler(TOKEN)
    service = services(behave)
    account = make_account(merchant)
    reply_route(service)
    inner = text_xml(account, msg_id="7010")
    # A first request that crashed mid-forward left its delivery in flight.
    live_portal.app.config["RELAY_REPLY_TIMEOUT"] = 0.0  # stored, never forwarded
    assert wechat.send(account.appid, inner).text == "success"
    settled()
    db.session.execute(
        RelayDelivery.__table__.update().values(status="in_flight")
    )  # as if the process died before settling
    db.session.commit()
    live_portal.app.config["RELAY_REPLY_TIMEOUT"] = 1.0
    portal_clock.travel(5)

    started = time.perf_counter()
    assert wechat.send(account.appid, inner).text == "success"
    assert time.perf_counter() - started < 0.5
    (delivery,) = deliveries()
    assert delivery.status == "late" and service.calls() == 0


def test_the_inbox_retry_run_marks_forgotten_in_flight_deliveries_late(
    live_portal, wechat, services, merchant, portal_clock
):
    from app.services.platform import intake

    behave, _ = wechatpy_text_handler(TOKEN)
    account = make_account(merchant)
    reply_route(services(behave))
    assert wechat.send(account.appid, text_xml(account)).status_code == 200
    settled()
    db.session.execute(RelayDelivery.__table__.update().values(status="in_flight"))
    db.session.commit()
    assert live_portal.call(inbound.mark_abandoned) == ""  # not old enough yet
    portal_clock.travel(120)
    summary = live_portal.call(intake.retry_failed_events)
    assert "relay: 1 abandoned reply deliveries marked late" in summary
    (delivery,) = deliveries()
    assert (delivery.status, delivery.last_error) == ("late", "abandoned in flight")


def test_a_message_sealed_with_the_previous_key_is_answered_with_it(
    live_portal, wechat, services, merchant
):
    """During an EncodingAESKey rotation WeChat may still seal with the old key: the reply goes
    back under the key the message came with."""
    from wechatpy.crypto import WeChatCrypto

    config = live_portal.app.config
    old_key, new_key = config["WECHAT_ENCODING_AES_KEY"], "N" * 43
    config.update(WECHAT_ENCODING_AES_KEY=new_key, WECHAT_PREVIOUS_ENCODING_AES_KEY=old_key)
    live_portal.app.extensions.pop("grantdesk.wechat", None)  # rebuild MessageCrypto
    behave, replies = wechatpy_text_handler(TOKEN)
    account = make_account(merchant)
    reply_route(services(behave))

    response = wechat.send(account.appid, text_xml(account, "old key", msg_id="7020"))

    assert wechat.open_reply(response.text) == replies["7020"]  # wechat.crypto has the old key
    current = WeChatCrypto(config["WECHAT_TOKEN"], new_key, config["WECHAT_COMPONENT_APPID"])
    with pytest.raises(Exception):  # noqa: B017 - any failure: not readable with the new key
        outer = xmltodict.parse(response.text)["xml"]
        current.decrypt_message(response.text, outer["MsgSignature"], outer["TimeStamp"],
                                outer["Nonce"])  # fmt: skip


def test_relay_outcomes_are_counted(live_portal, wechat, services, merchant):
    from app import metrics

    def count(outcome):
        return metrics.RELAY_MESSAGES.labels(outcome=outcome)._value.get()

    def delivered():
        return metrics.RELAY_DELIVERIES.labels(mode="reply", status="delivered")._value.get()

    before = {name: count(name) for name in ("stored", "duplicate", "no_route", "not_active")}
    before_delivered, before_seconds = delivered(), metrics.RELAY_REPLY_SECONDS._sum.get()
    behave, _ = wechatpy_text_handler(TOKEN, delay=lambda: 0.05)
    account = make_account(merchant)
    reply_route(services(behave), msg_types=["text"])
    inner = text_xml(account, msg_id="7030")
    wechat.send(account.appid, inner)
    wechat.send(account.appid, inner)
    wechat.send(account.appid, event_xml(account))
    wechat.send("wxnotheld00000002", text_xml(account))
    after = {name: count(name) for name in before}
    assert {name: after[name] - before[name] for name in before} == {
        "stored": 1, "duplicate": 1, "no_route": 1, "not_active": 1,
    }  # fmt: skip
    assert delivered() == before_delivered + 1
    assert metrics.RELAY_REPLY_SECONDS._sum.get() - before_seconds >= 0.05
