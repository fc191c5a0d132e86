"""Full-release check: all ten test accounts and the expected replies. Reference §4.1."""

import pytest

from app.wechat.events import build_message_xml, parse_message
from app.wechat.release import (
    RELEASE_TEST_ACCOUNTS,
    expected_reply,
    is_release_test_account,
    passive_reply_xml,
    release_test_account,
)

ACCOUNTS = {
    ("wx570bc396a51b8ff8", "gh_3c884a361561"),
    ("wx9252c5e0bb1836fc", "gh_c0f28a78b318"),
    ("wx8e1097c5bc82cde9", "gh_3f222ed8d140"),
    ("wx14550af28c71a144", "gh_26128078e9ab"),
    ("wxa35b9c23cfe664eb", "gh_2b3713f184a6"),
    ("wxd101a85aa106f53e", "gh_8dad206e9538"),
    ("wxc39235c15087f6f3", "gh_905ae9d01059"),
    ("wx7720d01d4b2a4500", "gh_393666f1fdf4"),
    ("wx05d483572dcd5d8b", "gh_39abb5d4e1b7"),
    ("wx5910277cae6fd970", "gh_7818dcb60240"),
}


def test_all_five_groups_of_both_types() -> None:
    assert {(a.appid, a.username) for a in RELEASE_TEST_ACCOUNTS} == ACCOUNTS
    for group in range(1, 6):
        kinds = {a.account_type for a in RELEASE_TEST_ACCOUNTS if a.group == group}
        assert kinds == {"official_account", "mini_program"}


@pytest.mark.parametrize("appid,username", sorted(ACCOUNTS))
def test_lookup_by_appid_or_username(appid: str, username: str) -> None:
    assert is_release_test_account(appid) and is_release_test_account(username.upper())
    assert release_test_account(appid) == release_test_account(username)


def test_ordinary_accounts_are_not_test_accounts() -> None:
    assert not is_release_test_account("wxf8b4f85f3a794e77")
    assert not is_release_test_account("")


def _msg(msg_type: str, **extra):
    return parse_message(
        build_message_xml("gh_3c884a361561", "ozy4qt1user", 1_700_000_000, msg_type, **extra)
    )


def test_event_check() -> None:
    message = _msg("event", Event="LOCATION", Latitude="23.1")
    plan = expected_reply(message)
    assert (plan.check, plan.reply_text, plan.needs_api_follow_up) == (
        "event",
        "LOCATIONfrom_callback",
        False,
    )
    reply = parse_message(passive_reply_xml(message, plan, 1_700_000_001))
    assert (reply.to_user_name, reply.from_user_name, reply.content) == (
        "ozy4qt1user",
        "gh_3c884a361561",
        "LOCATIONfrom_callback",
    )


def test_text_check() -> None:
    plan = expected_reply(_msg("text", Content="TESTCOMPONENT_MSG_TYPE_TEXT", MsgId=1))
    assert (plan.check, plan.reply_text) == ("text", "TESTCOMPONENT_MSG_TYPE_TEXT_callback")


def test_query_auth_code_check() -> None:
    message = _msg("text", Content="QUERY_AUTH_CODE:queryauthcode@@@abc-123", MsgId=2)
    plan = expected_reply(message)
    assert plan.check == "query_auth_code" and plan.needs_api_follow_up
    assert plan.reply_text is None and passive_reply_xml(message, plan, 1) == ""
    assert plan.query_auth_code == "queryauthcode@@@abc-123"
    assert plan.custom_message == "queryauthcode@@@abc-123_from_api"
    assert plan.to_user == "ozy4qt1user"
    assert "queryauthcode" not in repr(plan)


@pytest.mark.parametrize("content", ["hello", "QUERY_AUTH_CODE:", "testcomponent_msg_type_text"])
def test_other_messages_get_no_special_reply(content: str) -> None:
    plan = expected_reply(_msg("text", Content=content))
    assert plan.check == "none" and plan.reply_text is None and not plan.needs_api_follow_up
    assert expected_reply(_msg("image", PicUrl="http://x")).check == "none"
