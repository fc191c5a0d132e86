"""Event and message parsing, builders, dedupe keys, hostile inner XML. Reference §2, §1.6."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.wechat import errors
from app.wechat.events import (
    Authorized,
    ComponentVerifyTicket,
    EventMessage,
    TextMessage,
    Unauthorized,
    UnknownEvent,
    UnknownMessage,
    UpdateAuthorized,
    build_event_xml,
    build_message_xml,
    build_text_reply_xml,
    build_xml,
    parse_event,
    parse_message,
)
from tests.unit.wechat.conftest import APPID

PROPS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

TICKET_XML = (
    "<xml><AppId>some_appid</AppId><CreateTime>1413192605</CreateTime>"
    "<InfoType>component_verify_ticket</InfoType>"
    "<ComponentVerifyTicket>some_verify_ticket</ComponentVerifyTicket></xml>"
)
AUTHORIZED_XML = """<xml>
  <AppId><![CDATA[wx6d80ca40ad4e00fc]]></AppId>
  <CreateTime>1572001402</CreateTime>
  <InfoType><![CDATA[authorized]]></InfoType>
  <AuthorizerAppid><![CDATA[wxf8b4f85f3a794e77]]></AuthorizerAppid>
  <AuthorizationCode><![CDATA[queryauthcode@@@abc]]></AuthorizationCode>
  <AuthorizationCodeExpiredTime>1572005002</AuthorizationCodeExpiredTime>
  <PreAuthCode><![CDATA[preauthcode@@@xyz]]></PreAuthCode>
</xml>"""
UNAUTHORIZED_XML = (
    "<xml><AppId><![CDATA[wxb598c3f1c6995581]]></AppId><CreateTime>1446717978</CreateTime>"
    "<InfoType><![CDATA[unauthorized]]></InfoType>"
    "<AuthorizerAppid><![CDATA[wx570bc396a51b8ff8]]></AuthorizerAppid></xml>"
)


def test_ticket_event() -> None:
    event = parse_event(TICKET_XML)
    assert isinstance(event, ComponentVerifyTicket)
    assert (event.app_id, event.create_time, event.info_type, event.ticket) == (
        "some_appid",
        1413192605,
        "component_verify_ticket",
        "some_verify_ticket",
    )
    assert event.fields["ComponentVerifyTicket"] == "some_verify_ticket"
    assert "some_verify_ticket" not in repr(event)
    assert "some_verify_ticket" not in event.dedupe_key


@pytest.mark.parametrize(
    "info_type,cls", [("authorized", Authorized), ("updateauthorized", UpdateAuthorized)]
)
def test_authorized_events(info_type: str, cls: type) -> None:
    event = parse_event(AUTHORIZED_XML.replace("[authorized]", f"[{info_type}]").encode())
    assert type(event) is cls
    assert event.authorizer_appid == "wxf8b4f85f3a794e77"
    assert event.authorization_code == "queryauthcode@@@abc"
    assert event.authorization_code_expired_time == 1572005002
    assert event.code_expires_at == 1572005002
    assert event.pre_auth_code == "preauthcode@@@xyz"
    assert "queryauthcode" not in repr(event) and "queryauthcode" not in event.dedupe_key
    assert hash(event) == hash(
        parse_event(AUTHORIZED_XML.replace("[authorized]", f"[{info_type}]"))
    )
    assert event.dedupe_key.startswith(f"{info_type}:1572001402:{event.app_id}:wxf8b4f85f3a794e77:")


def test_authorized_lenient_expiry_and_optional_fields() -> None:
    xml = build_event_xml(
        "authorized",
        {
            "AppId": APPID,
            "CreateTime": 1000,
            "AuthorizerAppid": "wxa",
            "AuthorizationCode": "c",
            "AuthorizationCodeExpiredTime": 3600,
        },
    )
    event = parse_event(xml)
    assert event.code_expires_at == 4600 and event.pre_auth_code is None
    xml = build_event_xml(
        "authorized",
        {"AppId": APPID, "CreateTime": 1000, "AuthorizerAppid": "a", "AuthorizationCode": "c"},
    )
    assert parse_event(xml).code_expires_at is None


def test_unauthorized_event() -> None:
    event = parse_event(UNAUTHORIZED_XML)
    assert isinstance(event, Unauthorized)
    assert event.authorizer_appid == "wx570bc396a51b8ff8"
    # The platform is part of the key: two platforms' pushes at one second are two pushes.
    assert event.dedupe_key == f"unauthorized:1446717978:{event.app_id}:wx570bc396a51b8ff8"
    other = Unauthorized(**{**event.__dict__, "app_id": "wxanotherplatform"})
    assert other.dedupe_key != event.dedupe_key


def test_unknown_event_keeps_every_field_including_nested() -> None:
    xml = build_event_xml(
        "notify_third_fasteregister",
        {
            "AppId": APPID,
            "CreateTime": 1,
            "appid": "wxnew",
            "status": 0,
            "auth_code": "x",
            "info": {"name": "公司", "code": "123", "legal_persona_wechat": "w"},
        },
    )
    event = parse_event(xml)
    assert isinstance(event, UnknownEvent)
    assert event.fields["info.name"] == "公司" and event.fields["status"] == "0"
    assert event.dedupe_key.startswith(f"notify_third_fasteregister:1:{event.app_id}:")


def test_dedupe_keys_stable_and_distinct() -> None:
    def ticket(value: str, t: int = 1) -> ComponentVerifyTicket:
        fields = {"AppId": APPID, "CreateTime": t, "ComponentVerifyTicket": value}
        return parse_event(build_event_xml("component_verify_ticket", fields))

    assert ticket("a").dedupe_key == ticket("a").dedupe_key
    assert ticket("a").dedupe_key != ticket("b").dedupe_key
    assert ticket("a").dedupe_key != ticket("a", 2).dedupe_key
    assert parse_event(TICKET_XML) == parse_event(TICKET_XML)
    assert hash(parse_event(TICKET_XML)) == hash(parse_event(TICKET_XML))


@pytest.mark.parametrize(
    "xml",
    [
        "",
        "<xml>",
        "<notxml><AppId>a</AppId></notxml>",
        "<xml><CreateTime>1</CreateTime><InfoType>x</InfoType></xml>",  # no AppId
        "<xml><AppId>a</AppId><InfoType>x</InfoType></xml>",  # no CreateTime
        "<xml><AppId>a</AppId><CreateTime>soon</CreateTime><InfoType>x</InfoType></xml>",
        "<xml><AppId>a</AppId><CreateTime>--5</CreateTime><InfoType>x</InfoType></xml>",
        "<xml><AppId>a</AppId><CreateTime>1e9</CreateTime><InfoType>x</InfoType></xml>",
        "<xml><AppId>a</AppId><CreateTime>1</CreateTime></xml>",  # no InfoType
        "<xml><AppId>a</AppId><AppId>b</AppId><CreateTime>1</CreateTime><InfoType>x</InfoType></xml>",
        "<xml><AppId>a</AppId><CreateTime>1</CreateTime><InfoType>component_verify_ticket</InfoType></xml>",
        "<xml><AppId>a</AppId><CreateTime>1</CreateTime><InfoType>authorized</InfoType>"
        "<AuthorizerAppid>b</AuthorizerAppid></xml>",
        "<xml><AppId>a</AppId><CreateTime>1</CreateTime><InfoType>authorized</InfoType>"
        "<AuthorizerAppid>b</AuthorizerAppid><AuthorizationCode>c</AuthorizationCode>"
        "<AuthorizationCodeExpiredTime>later</AuthorizationCodeExpiredTime></xml>",
        "<xml><AppId>a</AppId><CreateTime>1</CreateTime><InfoType>unauthorized</InfoType></xml>",
        '<!DOCTYPE xml [<!ENTITY x "y">]><xml><AppId>&x;</AppId></xml>',
        "<xml><AppId>a<b>c</b></AppId></xml>",
    ],
)
def test_malformed_events(xml: str) -> None:
    with pytest.raises(errors.MalformedMessage):
        parse_event(xml)


def test_oversize_event() -> None:
    xml = build_event_xml("x", {"AppId": "a", "CreateTime": 1, "Pad": "p" * 70_000})
    with pytest.raises(errors.MalformedMessage):
        parse_event(xml)
    assert parse_event(xml, max_bytes=100_000).fields["Pad"] == "p" * 70_000


xml_text = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs",),
        blacklist_characters="\ufffe\uffff",
        min_codepoint=0x09,
    ).filter(lambda c: c in "\t\n\r" or ord(c) >= 0x20),
    max_size=60,
)


@PROPS
@given(code=xml_text, pre=xml_text, appid=xml_text.filter(bool))
def test_builder_round_trip_any_text(code: str, pre: str, appid: str) -> None:
    fields = {
        "AppId": appid,
        "CreateTime": 7,
        "AuthorizerAppid": "wxa",
        "AuthorizationCode": code + "]]>" + code,
        "PreAuthCode": pre,
    }
    event = parse_event(build_event_xml("updateauthorized", fields))
    assert event.app_id == appid
    assert event.authorization_code == code + "]]>" + code
    assert event.fields["PreAuthCode"] == pre


def test_builder_rejects_unrepresentable_input() -> None:
    with pytest.raises(ValueError):
        build_xml({"A": "\x00"})
    with pytest.raises(ValueError):
        build_xml({"bad tag": "x"})
    with pytest.raises(TypeError):
        build_xml({"A": True})
    with pytest.raises(TypeError):
        build_xml({"A": 1.5})


def test_builder_matches_wechat_shape() -> None:
    xml = build_event_xml(
        "component_verify_ticket",
        {"ComponentVerifyTicket": "t]]>x", "CreateTime": 5, "AppId": "wxc"},
    )
    assert xml == (
        "<xml><AppId><![CDATA[wxc]]></AppId><CreateTime>5</CreateTime>"
        "<InfoType><![CDATA[component_verify_ticket]]></InfoType>"
        "<ComponentVerifyTicket><![CDATA[t]]]]><![CDATA[>x]]></ComponentVerifyTicket></xml>"
    )


def test_event_through_encrypted_push(crypto) -> None:
    inner = build_event_xml(
        "component_verify_ticket",
        {"AppId": APPID, "CreateTime": 1, "ComponentVerifyTicket": "ticket@@@x"},
    )
    body, sig = crypto.encrypt_message(inner, "1", "2")
    again, sig2 = crypto.encrypt_message(inner, "1", "2")  # a retry: new ciphertext, same push
    first = parse_event(crypto.decrypt_message(body, sig, "1", "2"))
    second = parse_event(crypto.decrypt_message(again, sig2, "1", "2"))
    assert body != again and first.dedupe_key == second.dedupe_key


# --- relayed messages ------------------------------------------------------------------------


def test_text_message_and_reply() -> None:
    xml = build_message_xml(
        "gh_3c884a361561",
        "ozy4qt1",
        1_700_000_000,
        "text",
        Content="TESTCOMPONENT_MSG_TYPE_TEXT",
        MsgId=1234567890123456,
    )
    msg = parse_message(xml)
    assert isinstance(msg, TextMessage)
    assert (msg.content, msg.msg_id, msg.to_user_name) == (
        "TESTCOMPONENT_MSG_TYPE_TEXT",
        "1234567890123456",
        "gh_3c884a361561",
    )
    assert msg.dedupe_key == "msg:gh_3c884a361561:1234567890123456"
    reply = parse_message(build_text_reply_xml(msg, "hi", 1_700_000_001))
    assert (reply.to_user_name, reply.from_user_name, reply.content) == (
        "ozy4qt1",
        "gh_3c884a361561",
        "hi",
    )


def test_event_and_unknown_messages() -> None:
    msg = parse_message(build_message_xml("gh_1", "o1", 5, "event", Event="LOCATION", Latitude="1"))
    assert isinstance(msg, EventMessage) and msg.event == "LOCATION" and msg.event_key is None
    assert (
        msg.dedupe_key
        == parse_message(build_message_xml("gh_1", "o1", 5, "event", Event="LOCATION")).dedupe_key
    )
    pic = parse_message(build_message_xml("gh_1", "o1", 5, "image", PicUrl="http://x", MsgId=9))
    assert isinstance(pic, UnknownMessage) and pic.fields["PicUrl"] == "http://x"


@pytest.mark.parametrize(
    "xml",
    [
        "<xml><FromUserName>o</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>",
        "<xml><ToUserName>g</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>"
        "<MsgType>event</MsgType></xml>",
        "<xml><ToUserName>g</ToUserName><FromUserName>o</FromUserName><CreateTime>x</CreateTime>"
        "<MsgType>text</MsgType></xml>",
    ],
)
def test_malformed_messages(xml: str) -> None:
    with pytest.raises(errors.MalformedMessage):
        parse_message(xml)


@PROPS
@given(body=st.binary(max_size=300) | st.text(max_size=300))
def test_arbitrary_inner_xml_only_raises_malformed(body) -> None:
    for parse in (parse_event, parse_message):
        try:
            parse(body)
        except errors.MalformedMessage:
            pass
