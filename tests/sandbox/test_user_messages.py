"""POST /sandbox/api/user-message: a user writes to an authorized account and WeChat relays it to
the platform's message URL (encrypted, 5 s per attempt, 3 attempts, the passive reply opened)."""

import html
import time

import pytest
import requests
from defusedxml import ElementTree

from app.wechat.crypto import MessageCrypto
from app.wechat.events import EventMessage, TextMessage, build_text_reply_xml, parse_message


@pytest.fixture
def wired(sandbox, receiver):
    """The sandbox relaying user messages to the receiver."""
    sandbox.configure(message_url=receiver.message_url)
    return sandbox


@pytest.fixture
def account(wired) -> dict:
    """An Official Account that has just authorized the platform."""
    return wired.authorize(wired.component_token())["account"]


def crypto_for(sandbox) -> MessageCrypto:
    config = sandbox.app.config
    return MessageCrypto(
        config["WECHAT_TOKEN"], config["WECHAT_ENCODING_AES_KEY"], config["WECHAT_COMPONENT_APPID"]
    )


def text_reply(sandbox, content: str):
    """A receiver reply: the encrypted passive text reply a WeChat SDK would produce."""
    box = crypto_for(sandbox)

    def reply(request):
        xml = build_text_reply_xml(parse_message(request.open(box)), content, int(time.time()))
        return box.encrypt_reply(xml, request.query["timestamp"], request.query["nonce"])

    return reply


def test_a_text_message_gets_the_decrypted_passive_reply(wired, receiver, account):
    receiver.replies.append(text_reply(wired, "您好，已收到"))
    result = wired.user_message(account["appid"], "text", content="在吗？")
    (request,) = receiver.requests
    assert request.path == f"/wechat/messages/{account['appid']}"
    assert set(request.query) == {
        "signature",
        "timestamp",
        "nonce",
        "openid",
        "encrypt_type",
        "msg_signature",
    }
    box = crypto_for(wired)
    box.verify_url_signature(
        request.query["signature"], request.query["timestamp"], request.query["nonce"]
    )
    assert request.query["encrypt_type"] == "aes"
    outer = ElementTree.fromstring(request.body)
    assert outer.findtext("ToUserName") == account["user_name"]
    message = parse_message(request.open(box))
    assert isinstance(message, TextMessage)
    assert (message.content, message.to_user_name) == ("在吗？", account["user_name"])
    assert message.from_user_name == request.query["openid"]
    assert int(message.msg_id) == result["msg_id"] and result["msg_id"] >= 10**18
    assert result["attempts"] == 1 and result["http_status"] == 200 and result["error"] is None
    assert result["reply_ms"] is not None and 0 <= result["reply_ms"] < 5000
    reply = parse_message(result["reply_xml"])
    assert isinstance(reply, TextMessage) and reply.content == "您好，已收到"
    assert reply.to_user_name == message.from_user_name
    # The same user writes again: a stable openid, a new MsgId.
    again = wired.user_message(account["appid"], "text", content="hi")
    second = parse_message(receiver.requests[1].open(box))
    assert second.from_user_name == message.from_user_name
    assert again["msg_id"] != result["msg_id"] and again["reply_xml"] is None


def test_success_ends_it_at_once(wired, receiver, account):
    result = wired.user_message(account["appid"], "text", content="hi", openid="oUser1")
    assert result["attempts"] == 1 and result["http_status"] == 200
    assert result["reply_xml"] is None and result["error"] is None
    assert receiver.requests[0].query["openid"] == "oUser1"
    (delivery,) = [d for d in wired.deliveries() if d["info_type"] == "message:text"]
    assert delivery["status"] == "delivered" and delivery["msg_id"] == result["msg_id"]
    assert delivery["openid"] == "oUser1" and len(delivery["attempts"]) == 1


def test_an_empty_reply_ends_it_too(wired, receiver, account):
    receiver.replies.append("")
    result = wired.user_message(account["appid"], "text", content="hi")
    assert (result["attempts"], result["reply_xml"], result["error"]) == (1, None, None)


def test_a_slow_platform_gets_three_attempts_of_the_same_message(wired, receiver, account):
    wired.app.config["SANDBOX_MESSAGE_TIMEOUT"] = 0.3  # reset() restores the baseline

    def slow(request):
        time.sleep(0.8)
        return "success"

    receiver.default_reply = slow
    started = time.monotonic()
    result = wired.user_message(account["appid"], "text", content="hi")
    assert time.monotonic() - started < 3
    assert result["attempts"] == 3 and result["http_status"] is None
    assert result["error"] == "ReadTimeout" and result["reply_ms"] is None
    seen = receiver.wait_for(3)
    assert len(seen) == 3
    box = crypto_for(wired)
    msg_ids = [parse_message(r.open(box)).msg_id for r in seen]
    assert msg_ids == [str(result["msg_id"])] * 3
    assert len({(r.body, tuple(sorted(r.query.items()))) for r in seen}) == 1  # same bytes
    (delivery,) = [d for d in wired.deliveries() if d["info_type"] == "message:text"]
    assert delivery["status"] == "failed"
    assert [a["error"] for a in delivery["attempts"]] == ["ReadTimeout"] * 3


def test_errors_are_retried(wired, receiver, account):
    receiver.default_reply = (500, "oops")
    result = wired.user_message(account["appid"], "text", content="hi")
    assert (result["attempts"], result["http_status"], result["error"]) == (3, 500, "HTTP 500")
    assert len(receiver.requests) == 3
    receiver.default_reply = "success"
    receiver.replies.extend([(502, "bad gateway"), text_reply(wired, "second time lucky")])
    result = wired.user_message(account["appid"], "text", content="hi")
    assert (result["attempts"], result["http_status"]) == (2, 200)
    assert parse_message(result["reply_xml"]).content == "second time lucky"


def test_an_invalid_reply_is_answered_and_reported_not_retried(wired, receiver, account):
    receiver.replies.append("<xml><ToUserName>x</ToUserName></xml>")  # plaintext in safe mode
    result = wired.user_message(account["appid"], "text", content="hi")
    assert result["attempts"] == 1 and result["reply_xml"] is None
    assert result["error"].startswith("invalid reply")
    box = crypto_for(wired)
    forged = box.encrypt_reply("<xml><MsgType>text</MsgType></xml>", "1", "2").replace(
        "<MsgSignature><![CDATA[", "<MsgSignature><![CDATA[0"
    )
    receiver.replies.append(forged)
    result = wired.user_message(account["appid"], "text", content="hi")
    assert result["error"].startswith("invalid reply") and "-40001" in result["error"]


def test_an_event_has_no_msg_id(wired, receiver, account):
    result = wired.user_message(
        account["appid"], "event", event="subscribe", event_key="qrscene_42"
    )
    assert result["msg_id"] is None and result["attempts"] == 1
    event = parse_message(receiver.requests[0].open(crypto_for(wired)))
    assert isinstance(event, EventMessage)
    assert (event.event, event.event_key) == ("subscribe", "qrscene_42")
    assert "MsgId" not in event.fields
    plain = wired.user_message(account["appid"], "event", event="CLICK")
    assert plain["msg_id"] is None
    assert "EventKey" not in parse_message(receiver.requests[1].open(crypto_for(wired))).fields


def test_an_image_carries_its_media(wired, receiver, account):
    result = wired.user_message(
        account["appid"], "image", media_id="MEDIA1", pic_url="http://example.invalid/p.jpg"
    )
    fields = parse_message(receiver.requests[0].open(crypto_for(wired))).fields
    assert (fields["MediaId"], fields["PicUrl"]) == ("MEDIA1", "http://example.invalid/p.jpg")
    assert fields["MsgId"] == str(result["msg_id"])


def test_only_authorized_accounts_and_good_messages_are_sent(wired, receiver, account):
    unknown = wired.user_message("wx0000000000000000", "text", content="x", expect=400)
    assert (unknown["error"], unknown["errcode"]) == ("unknown_account", 40013)
    assert "rid:" in unknown["errmsg"]
    other = wired.account(scenario="shared")
    refused = wired.user_message(other["appid"], "text", content="x", expect=400)
    assert (refused["error"], refused["errcode"]) == ("not_authorized", 61003)
    bad = wired.user_message(account["appid"], "sticker", expect=400)
    assert bad["error"] == "bad_msg_type" and "text" in bad["message"]
    empty = wired.user_message(account["appid"], "text", expect=400)
    assert empty["error"] == "content_required"
    no_event = wired.user_message(account["appid"], "event", expect=400)
    assert no_event["error"] == "event_required"
    wired.revoke(account["appid"])
    revoked = wired.user_message(account["appid"], "text", content="x", expect=400)
    assert revoked["error"] == "not_authorized"
    wired.flush()
    assert not [r for r in receiver.requests if r.path.startswith("/wechat/messages/")]
    assert not [d for d in wired.deliveries() if d["info_type"].startswith("message:")]


def test_push_faults_apply(wired, receiver, account):
    wired.set_faults(pushes={"duplicate": True, "delay": 0.3})
    started = time.monotonic()
    result = wired.user_message(account["appid"], "text", content="hi")
    assert time.monotonic() - started >= 0.3
    assert len(receiver.requests) == 2
    box = crypto_for(wired)
    assert {parse_message(r.open(box)).msg_id for r in receiver.requests} == {str(result["msg_id"])}
    assert result["duplicate"]["msg_id"] == result["msg_id"]
    assert result["duplicate"]["attempts"] == 1
    copies = [d for d in wired.deliveries() if d["info_type"] == "message:text"]
    assert [d["duplicate_of"] for d in copies] == [None, copies[0]["id"]]


def test_the_dashboard_shows_the_conversation(wired, receiver, account):
    receiver.replies.append(text_reply(wired, "欢迎光临 <悦享>"))
    wired.user_message(account["appid"], "text", content="营业时间？")
    wired.user_message(account["appid"], "event", event="subscribe")
    receiver.replies.append("")
    wired.user_message(account["appid"], "text", content="谢谢")
    receiver.default_reply = (500, "down")
    wired.user_message(account["appid"], "text", content="还在吗")
    page = requests.get(f"{wired.url}/sandbox/?lang=en", timeout=30).text
    section = page[page.index('id="conversations"') :]
    rows = [html.unescape(row) for row in section.split('<tr class="message"')[1:]]
    assert len(rows) == 4
    assert "营业时间？" in rows[0] and "欢迎光临 <悦享>" in rows[0]
    assert "event subscribe" in rows[1] and "success" in rows[1]
    assert "谢谢" in rows[2] and "no reply" in rows[2]
    assert "还在吗" in rows[3] and "failed: HTTP 500" in rows[3] and "<td>3</td>" in rows[3]
    assert account["appid"] in section and account["nick_name"] in section
    chinese = requests.get(f"{wired.url}/sandbox/?lang=zh", timeout=30).text
    assert "用户消息" in chinese and "无回复" in chinese
    (row,) = [m for m in wired.state()["user_messages"] if m["content"] == "营业时间？"]
    assert row["answer"] == "reply" and row["reply_content"] == "欢迎光临 <悦享>"
