"""Full-release (全网发布) automated check: test accounts and expected replies. Reference §4.1.

Facts come from WeChat's 全网发布检测说明 page (Third-party_Platforms/2.0/operation/thirdparty/
releases_instructions.html, zh version; the en page misprints group 2's OA username). WeChat picks
one of five account groups at random, so all five must be handled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.wechat.events import EventMessage, Message, TextMessage, build_text_reply_xml

__all__ = [
    "TestAccount",
    "RELEASE_TEST_ACCOUNTS",
    "TEXT_TRIGGER",
    "TEXT_REPLY",
    "EVENT_REPLY_SUFFIX",
    "QUERY_AUTH_PREFIX",
    "API_REPLY_SUFFIX",
    "ReplyPlan",
    "is_release_test_account",
    "release_test_account",
    "expected_reply",
    "passive_reply_xml",
]

TEXT_TRIGGER = "TESTCOMPONENT_MSG_TYPE_TEXT"
TEXT_REPLY = "TESTCOMPONENT_MSG_TYPE_TEXT_callback"
EVENT_REPLY_SUFFIX = "from_callback"
QUERY_AUTH_PREFIX = "QUERY_AUTH_CODE:"
API_REPLY_SUFFIX = "_from_api"


@dataclass(frozen=True)
class TestAccount:
    """One dedicated release-test account (appid and original id). Reference §4.1."""

    __test__ = False  # not a pytest test class despite the name

    appid: str
    username: str
    account_type: str  # "official_account" or "mini_program" (catalog vocabulary)
    group: int


def _group(group: int, oa: tuple[str, str], mp: tuple[str, str]) -> tuple[TestAccount, ...]:
    return (
        TestAccount(oa[0], oa[1], "official_account", group),
        TestAccount(mp[0], mp[1], "mini_program", group),
    )


RELEASE_TEST_ACCOUNTS: tuple[TestAccount, ...] = (
    *_group(
        1, ("wx570bc396a51b8ff8", "gh_3c884a361561"), ("wxd101a85aa106f53e", "gh_8dad206e9538")
    ),
    *_group(
        2, ("wx9252c5e0bb1836fc", "gh_c0f28a78b318"), ("wxc39235c15087f6f3", "gh_905ae9d01059")
    ),
    *_group(
        3, ("wx8e1097c5bc82cde9", "gh_3f222ed8d140"), ("wx7720d01d4b2a4500", "gh_393666f1fdf4")
    ),
    *_group(
        4, ("wx14550af28c71a144", "gh_26128078e9ab"), ("wx05d483572dcd5d8b", "gh_39abb5d4e1b7")
    ),
    *_group(
        5, ("wxa35b9c23cfe664eb", "gh_2b3713f184a6"), ("wx5910277cae6fd970", "gh_7818dcb60240")
    ),
)
_BY_KEY = {key: a for a in RELEASE_TEST_ACCOUNTS for key in (a.appid.lower(), a.username.lower())}


def release_test_account(appid_or_username: str) -> TestAccount | None:
    """The test account for an appid or gh_ username (case-insensitive), else None. Ref §4.1."""
    return _BY_KEY.get((appid_or_username or "").strip().lower())


def is_release_test_account(appid_or_username: str) -> bool:
    """True for any of the ten dedicated full-release test accounts. Reference §4.1."""
    return release_test_account(appid_or_username) is not None


@dataclass(frozen=True)
class ReplyPlan:
    """What to answer a release-check message with, and any follow-up API work. Ref §4.1."""

    check: str  # "event", "text", "query_auth_code" or "none"
    # Passive reply text; None means answer the push with an empty body (or "success").
    reply_text: str | None = None
    # For QUERY_AUTH_CODE: exchange this code (api_query_auth), then send custom_message
    # to `to_user` through the customer-service API with the authorizer token obtained.
    query_auth_code: str | None = field(default=None, repr=False)
    custom_message: str | None = field(default=None, repr=False)
    to_user: str | None = None

    @property
    def needs_api_follow_up(self) -> bool:
        """True when a customer-service message must follow. Reference §3.3, §4.1."""
        return self.query_auth_code is not None


NO_REPLY = ReplyPlan(check="none")


def expected_reply(message: Message) -> ReplyPlan:
    """The reply the release check expects for a relayed message (pure). Reference §4.1.

    Callers decide whether the message came for a release test account
    (`is_release_test_account`); this function looks only at the message itself.
    """
    if isinstance(message, EventMessage):
        return ReplyPlan(check="event", reply_text=message.event + EVENT_REPLY_SUFFIX)
    if isinstance(message, TextMessage):
        if message.content == TEXT_TRIGGER:
            return ReplyPlan(check="text", reply_text=TEXT_REPLY)
        if message.content.startswith(QUERY_AUTH_PREFIX):
            code = message.content[len(QUERY_AUTH_PREFIX) :].strip()
            if code:
                return ReplyPlan(
                    check="query_auth_code",
                    reply_text=None,  # answer empty at once; the real answer goes by API
                    query_auth_code=code,
                    custom_message=code + API_REPLY_SUFFIX,
                    to_user=message.from_user_name,
                )
    return NO_REPLY


def passive_reply_xml(message: Message, plan: ReplyPlan, create_time: int) -> str:
    """Plain reply XML for a plan ("" when the plan says answer empty); encrypt it after. §1.7."""
    if plan.reply_text is None:
        return ""
    return build_text_reply_xml(message, plan.reply_text, create_time)
