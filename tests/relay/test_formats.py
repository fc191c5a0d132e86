"""The wire formats (app/services/relay/formats.py) and passive-reply checks
(app/wechat/replies.py): what a route receives, and which replies reach WeChat."""

import hashlib
import hmac
import json
from datetime import UTC, datetime
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
import xmltodict
from wechatpy import parse_message
from wechatpy.replies import ArticlesReply, ImageReply, TextReply, VoiceReply
from wechatpy.utils import check_signature

from app.services.relay.formats import EVENT, Outgoing, build_request, read_reply
from app.wechat._xml import build_xml, flatten, parse_root
from app.wechat.replies import (
    MAX_ARTICLES,
    InvalidReply,
    check_passive_reply,
    nest,
    reply_from_json,
)

OPENID, ACCOUNT = "o_user_0001", "gh_account0001"
NOW = 1_800_000_000
XML = build_xml({
    "ToUserName": ACCOUNT, "FromUserName": OPENID, "CreateTime": NOW - 1, "MsgType": "event",
    "Event": "scancode_push", "EventKey": "k1",
    "ScanCodeInfo": {"ScanType": "qrcode", "ScanResult": "https://例子.cn/?a=1&b=<2>"},
})  # fmt: skip


def outgoing(xml=XML) -> Outgoing:
    return Outgoing(
        message_id=41, delivery_id=97, component_appid="wxcomponent000001",
        authorizer_appid="wxaccount0000001", merchant_id=7,
        received_at=datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC), xml=xml,
        fields=flatten(parse_root(xml)),
    )  # fmt: skip


def route(format_, **extra):
    values = {"format": format_, "url": "https://svc.example.com/hook?tenant=9",
              "token": "routetoken1", "secret": "a-long-json-secret-value"}  # fmt: skip
    return SimpleNamespace(**{**values, **extra})


# --- requests ---------------------------------------------------------------------------------


def test_wechat_xml_requests_are_what_a_wechatpy_handler_expects():
    request = build_request(route("wechat-xml"), outgoing(), timestamp=NOW)
    parts = urlsplit(request.url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "svc.example.com", "/hook")
    assert query["tenant"] == "9" and query["openid"] == OPENID
    assert query["timestamp"] == str(NOW)
    check_signature("routetoken1", query["signature"], query["timestamp"], query["nonce"])
    assert request.body == XML.encode()
    message = parse_message(request.body)
    assert (message.event, message.scan_type, message.scan_result) == (
        "scancode_push", "qrcode", "https://例子.cn/?a=1&b=<2>",
    )  # fmt: skip
    assert request.headers["Content-Type"].startswith("text/xml")


def test_wechat_xml_nonces_differ_between_requests():
    first = build_request(route("wechat-xml"), outgoing(), timestamp=NOW)
    second = build_request(route("wechat-xml"), outgoing(), timestamp=NOW)
    assert first.url != second.url


def test_json_requests_are_signed_like_grant_webhooks():
    request = build_request(route("json"), outgoing(), timestamp=NOW)
    assert request.url == "https://svc.example.com/hook?tenant=9"
    headers = request.headers
    assert headers["X-Grantdesk-Event"] == EVENT == "relay.message"
    assert headers["X-Grantdesk-Delivery"] == "97" and headers["X-Grantdesk-Timestamp"] == str(NOW)
    expected = hmac.new(b"a-long-json-secret-value", f"{NOW}.".encode() + request.body,
                        hashlib.sha256).hexdigest()  # fmt: skip
    assert headers["X-Grantdesk-Signature"] == f"sha256={expected}"
    document = json.loads(request.body)
    assert document == {
        "id": 41, "component_appid": "wxcomponent000001", "authorizer_appid": "wxaccount0000001",
        "merchant_id": 7, "received_at": "2027-01-02T03:04:05+00:00",
        "message": {
            "ToUserName": ACCOUNT, "FromUserName": OPENID, "CreateTime": str(NOW - 1),
            "MsgType": "event", "Event": "scancode_push", "EventKey": "k1",
            "ScanCodeInfo": {"ScanType": "qrcode", "ScanResult": "https://例子.cn/?a=1&b=<2>"},
        },
    }  # fmt: skip


def test_nest_rebuilds_nested_fields():
    nested = {"A": "1", "B": {"C": "2", "D": {"E": "3"}}}
    assert nest({"A": "1", "B.C": "2", "B.D.E": "3"}) == nested


# --- replies ----------------------------------------------------------------------------------


def message():
    return parse_message(XML.encode())


@pytest.mark.parametrize("body", [b"", b"success", b"  success\n", b"\n"])
def test_empty_and_success_mean_no_reply(body):
    for format_ in ("wechat-xml", "json"):
        assert read_reply(route(format_), outgoing(), body, now=NOW) is None


@pytest.mark.parametrize(
    "make",
    [
        lambda m: TextReply(message=m, content="你好 <b>&</b> x").render(),
        lambda m: ImageReply(message=m, media_id="media-1").render(),
        lambda m: VoiceReply(message=m, media_id="media-2").render(),
        lambda m: ArticlesReply(message=m, articles=[
            {"title": "一", "description": "d", "image": "https://i/1.png", "url": "https://u/1"},
            {"title": "二", "description": "d", "image": "https://i/2.png", "url": "https://u/2"},
        ]).render(),
    ],
    ids=["text", "image", "voice", "news"],
)  # fmt: skip
def test_wechatpy_replies_pass_unchanged(make):
    xml = make(message())
    assert read_reply(route("wechat-xml"), outgoing(), xml.encode(), now=NOW) == xml.strip()


def test_transfer_customer_service_needs_no_fields():
    xml = build_xml({"ToUserName": OPENID, "FromUserName": ACCOUNT, "CreateTime": NOW,
                     "MsgType": "transfer_customer_service"})  # fmt: skip
    assert check_passive_reply(xml, to_user=OPENID, from_user=ACCOUNT) == xml


def reply(**fields):
    base = {"ToUserName": OPENID, "FromUserName": ACCOUNT, "CreateTime": NOW, "MsgType": "text",
            "Content": "hi"}  # fmt: skip
    return build_xml({k: v for k, v in {**base, **fields}.items() if v is not None})


def articles(n, count=None):
    items = [{"Title": f"t{i}", "Url": f"https://u/{i}"} for i in range(n)]
    return reply(MsgType="news", Content=None, ArticleCount=count if count is not None else n,
                 Articles={"item": items})  # fmt: skip


@pytest.mark.parametrize(
    "xml, problem",
    [
        (reply(ToUserName="o_someone_else"), "not addressed"),
        (reply(FromUserName="gh_other_account"), "not addressed"),
        (reply(ToUserName=None), "not addressed"),
        (reply(CreateTime="soon"), "CreateTime"),
        (reply(MsgType="markdown"), "unknown reply MsgType"),
        (reply(MsgType=None), "unknown reply MsgType"),
        (reply(Content=""), "lacks Content"),
        (reply(MsgType="image", Content=None), "lacks Image.MediaId"),
        (reply(MsgType="music", Content=None, Music={"Title": "x"}), "lacks Music.ThumbMediaId"),
        (articles(2, count=3), "ArticleCount"),
        (articles(MAX_ARTICLES + 1), "ArticleCount"),
        (articles(0, count=0), "lacks"),
        ("<xml><ToUserName>x", "not well-formed"),
        ("<notxml/>", "not well-formed"),
        ('<!DOCTYPE x [<!ENTITY e "boom">]><xml>&e;</xml>', "not well-formed"),
        ("{\"MsgType\": \"text\"}", "not well-formed"),
    ],
    ids=["other-user", "other-account", "no-to", "bad-time", "unknown-type", "no-type",
         "empty-text", "image-no-media", "music-no-thumb", "news-count", "news-too-many",
         "news-empty", "truncated", "wrong-root", "entities", "json-as-xml"],
)  # fmt: skip
def test_replies_wechat_would_drop_are_refused(xml, problem):
    with pytest.raises(InvalidReply, match=problem):
        read_reply(route("wechat-xml"), outgoing(), xml.encode(), now=NOW)


def test_max_articles_pass():
    xml = articles(MAX_ARTICLES)
    assert check_passive_reply(xml, to_user=OPENID, from_user=ACCOUNT) == xml


def test_non_utf8_replies_are_refused():
    with pytest.raises(InvalidReply, match="UTF-8"):
        read_reply(route("wechat-xml"), outgoing(), "你好".encode("gbk"), now=NOW)


# --- json replies -----------------------------------------------------------------------------


def json_reply(document) -> str | None:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return read_reply(route("json"), outgoing(), body, now=NOW)


def test_json_text_reply_becomes_addressed_reply_xml():
    xml = json_reply({"reply": {"MsgType": "text", "Content": "您好 ]]> <&>"}})
    fields = xmltodict.parse(xml)["xml"]
    assert fields == {"ToUserName": OPENID, "FromUserName": ACCOUNT, "CreateTime": str(NOW),
                      "MsgType": "text", "Content": "您好 ]]> <&>"}  # fmt: skip


def test_json_news_reply_takes_a_list_of_articles():
    document = {"reply": {"MsgType": "news", "ArticleCount": 2, "Articles": [
        {"Title": "一", "Description": "d1", "PicUrl": "https://p/1", "Url": "https://u/1"},
        {"Title": "二", "Description": "d2", "PicUrl": "https://p/2", "Url": "https://u/2"},
    ]}}  # fmt: skip
    xml = json_reply(document)
    parsed = parse_root(xml)
    items = parsed.find("Articles").findall("item")
    assert [item.findtext("Title") for item in items] == ["一", "二"]
    # What a wechatpy-style consumer reads back.
    assert xmltodict.parse(xml)["xml"]["ArticleCount"] == "2"


def test_json_nested_reply_objects_become_nested_xml():
    xml = json_reply({"reply": {"MsgType": "image", "Image": {"MediaId": "m-1"}}})
    assert xmltodict.parse(xml)["xml"]["Image"] == {"MediaId": "m-1"}


@pytest.mark.parametrize("document", [{}, {"reply": None}, {"other": 1}, [], "text", 3])
def test_json_without_a_reply_means_no_reply(document):
    assert json_reply(document) is None


def test_json_reply_may_name_the_right_addresses_but_not_others():
    ok = {"reply": {"MsgType": "text", "Content": "x", "ToUserName": OPENID,
                    "FromUserName": ACCOUNT, "CreateTime": 5}}  # fmt: skip
    assert xmltodict.parse(json_reply(ok))["xml"]["CreateTime"] == str(NOW)
    with pytest.raises(InvalidReply, match="not addressed"):
        json_reply({"reply": {"MsgType": "text", "Content": "x", "ToUserName": "o_other"}})


@pytest.mark.parametrize(
    "document, problem",
    [
        (b"{not json", "not JSON"),
        ({"reply": "hello"}, "must be an object"),
        ({"reply": {"Content": "x"}}, "must be an object"),
        ({"reply": {"MsgType": 1}}, "must be an object"),
        ({"reply": {"MsgType": "video"}}, "lacks Video.MediaId"),
        ({"reply": {"MsgType": "tex t", "Content": "x"}}, "unknown reply MsgType"),
        ({"reply": {"MsgType": "text", "Content": True}}, "cannot be written"),
        ({"reply": {"MsgType": "text", "Content": 1.5}}, "cannot be written"),
        ({"reply": {"MsgType": "text", "Content": "\x00"}}, "cannot be written"),
        ({"reply": {"MsgType": "text", "Content": "x", "bad tag": "y"}}, "cannot be written"),
        ({"reply": {"MsgType": "news", "ArticleCount": 1, "Articles": []}}, "lacks"),
    ],
)
def test_json_replies_wechat_would_drop_are_refused(document, problem):
    with pytest.raises(InvalidReply, match=problem):
        json_reply(document)


def test_reply_from_json_checks_like_xml():
    xml = reply_from_json({"MsgType": "text", "Content": "ok"}, to_user=OPENID,
                          from_user=ACCOUNT, create_time=NOW)  # fmt: skip
    assert check_passive_reply(xml, to_user=OPENID, from_user=ACCOUNT) == xml
