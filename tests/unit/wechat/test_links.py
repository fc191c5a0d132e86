"""Authorization links: every parameter combination, encoding, parser round trip. Reference §4."""

import itertools
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.wechat.links import (
    AuthType,
    mobile_authorization_url,
    parse_authorization_url,
    pc_authorization_url,
)

APPID = "wx6d80ca40ad4e00fc"
CODE = "preauthcode@@@Cx_Dk6qiBE0Dmx4EmlT3oRfArPvwSQ-oa3NL_fwHM7VI08r52wazoZX2Rhpz1dEw"
REDIRECT = "https://portal.example.com/connect/return?session=abc123&sig=x%2By/z==&lang=zh_CN"
BUILDERS = {"pc": pc_authorization_url, "mobile": mobile_authorization_url}

COMBOS = list(
    itertools.product(
        ["pc", "mobile"],
        [None, AuthType.OFFICIAL_ACCOUNT, AuthType.MINI_PROGRAM, AuthType.BOTH],
        [None, "wxf8b4f85f3a794e77"],
        [None, [], [1], [1, 18, 25]],
    )
)


@pytest.mark.parametrize("kind,auth_type,biz_appid,categories", COMBOS)
def test_every_combination_round_trips(kind, auth_type, biz_appid, categories) -> None:
    url = BUILDERS[kind](
        APPID, CODE, REDIRECT, auth_type=auth_type, biz_appid=biz_appid, category_id_list=categories
    )
    query = parse_qs(urlsplit(url).query)
    assert ("auth_type" in query) is (auth_type is not None)
    assert ("biz_appid" in query) is (biz_appid is not None)
    assert ("category_id_list" in query) is bool(categories)
    link = parse_authorization_url(url)
    assert (link.kind, link.component_appid, link.pre_auth_code, link.redirect_uri) == (
        kind,
        APPID,
        CODE,
        REDIRECT,
    )
    assert link.auth_type == (int(auth_type) if auth_type is not None else None)
    assert link.biz_appid == biz_appid
    assert link.category_id_list == tuple(categories or ())
    if kind == "mobile":
        assert link.extra == {"action": "bindcomponent", "no_scan": "1"}
    else:
        assert link.extra == {}


def test_pc_shape() -> None:
    url = pc_authorization_url(APPID, CODE, REDIRECT, auth_type=3, category_id_list=[1, 2])
    assert url.startswith("https://mp.weixin.qq.com/cgi-bin/componentloginpage?component_appid=")
    assert "category_id_list=1|2" in url
    # The redirect URI is one opaque, fully encoded value: its own & and ? do not leak out.
    assert (
        "redirect_uri=https%3A%2F%2Fportal.example.com%2Fconnect%2Freturn%3Fsession%3Dabc123%26"
        in url
    )
    assert "%2540" not in url and "preauthcode%40%40%40" in url
    assert set(parse_qs(urlsplit(url).query)) == {
        "component_appid",
        "pre_auth_code",
        "redirect_uri",
        "auth_type",
        "category_id_list",
    }


def test_mobile_shape() -> None:
    url = mobile_authorization_url(APPID, CODE, REDIRECT, auth_type=2, biz_appid="wxb")
    assert url.startswith(
        "https://open.weixin.qq.com/wxaopen/safe/bindcomponent?action=bindcomponent&no_scan=1&"
        "component_appid=wx6d80ca40ad4e00fc&pre_auth_code="
    )
    assert url.endswith("&auth_type=2&biz_appid=wxb#wechat_redirect")
    assert url.count("auth_type=") == 1


def test_configurable_bases_for_the_sandbox() -> None:
    pc = pc_authorization_url(APPID, CODE, REDIRECT, base="http://127.0.0.1:5001/")
    assert pc.startswith("http://127.0.0.1:5001/cgi-bin/componentloginpage?")
    mobile = mobile_authorization_url(APPID, CODE, REDIRECT, base="http://sandbox.test")
    assert mobile.startswith("http://sandbox.test/wxaopen/safe/bindcomponent?")
    assert (
        parse_authorization_url(pc).kind == "pc"
        and parse_authorization_url(mobile).kind == "mobile"
    )


def test_parses_legacy_mobile_link_with_duplicate_auth_type() -> None:
    url = (
        "https://mp.weixin.qq.com/safe/bindcomponent?action=bindcomponent&auth_type=3&no_scan=1"
        f"&component_appid={APPID}&pre_auth_code=abc&redirect_uri=https%3A%2F%2Fa.b%2Fc"
        "&auth_type=1#wechat_redirect"
    )
    link = parse_authorization_url(url)
    assert (link.kind, link.auth_type, link.redirect_uri) == ("mobile", 1, "https://a.b/c")


def test_parser_accepts_encoded_pipe() -> None:
    url = pc_authorization_url(APPID, CODE, REDIRECT).replace(
        "&redirect", "&category_id_list=1%7C17&redirect"
    )
    assert parse_authorization_url(url).category_id_list == (1, 17)


@settings(max_examples=200, deadline=None)
@given(
    path=st.text(max_size=30),
    query=st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=20), max_size=4),
    code=st.text(min_size=1, max_size=40),
    fragment=st.text(max_size=10),
)
def test_any_redirect_uri_and_code_survive(
    path: str, query: dict, code: str, fragment: str
) -> None:
    from urllib.parse import quote, urlencode

    redirect = f"https://portal.example.com/{quote(path)}?{urlencode(query)}"
    if fragment:
        redirect += "#" + quote(fragment)
    for build in BUILDERS.values():
        link = parse_authorization_url(build(APPID, code, redirect, category_id_list=[3]))
        assert (link.redirect_uri, link.pre_auth_code) == (redirect, code)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"component_appid": ""},
        {"pre_auth_code": ""},
        {"redirect_uri": "/relative/path"},
        {"redirect_uri": "javascript:alert(1)"},
        {"redirect_uri": "https://"},
        {"auth_type": 0},
        {"auth_type": True},
        {"category_id_list": [0]},
        {"category_id_list": ["x"]},
    ],
)
def test_builder_rejects_bad_input(kwargs: dict) -> None:
    args = {"component_appid": APPID, "pre_auth_code": CODE, "redirect_uri": REDIRECT} | kwargs
    for build in BUILDERS.values():
        with pytest.raises(ValueError):
            build(**args)


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/other?component_appid=a",
        "https://mp.weixin.qq.com/cgi-bin/componentloginpage?component_appid=a&pre_auth_code=b",
        "https://mp.weixin.qq.com/cgi-bin/componentloginpage?component_appid=a&pre_auth_code=b"
        "&redirect_uri=https%3A%2F%2Fx&auth_type=two",
        "https://mp.weixin.qq.com/cgi-bin/componentloginpage?component_appid=a&pre_auth_code=b"
        "&redirect_uri=https%3A%2F%2Fx&category_id_list=1|x",
        "https://mp.weixin.qq.com/cgi-bin/componentloginpage?component_appid=a&pre_auth_code=b"
        "&redirect_uri=https%3A%2F%2Fx&auth_type=%C2%B2",
    ],
)
def test_parser_rejects_bad_links(url: str) -> None:
    with pytest.raises(ValueError):
        parse_authorization_url(url)
