"""ComponentClient against a real local HTTP server: shapes, errors, retries. Ref §3, §6."""

import logging
import socket

import pytest
import requests

from app.wechat import errors
from app.wechat.client import ComponentClient
from tests.unit.wechat.fake_wechat import FakeWeChat, Reply

APPID = "wx6d80ca40ad4e00fc"
SECRET = "s3cr3t-appsecret-value"
CTOKEN = "61W3mEpU66027wgNZ_MhGHNQDHnFATkDa9-2llqrMBjUwxRSNPbVsMmyD-yq8wZETSoE5NQgecigDrSHkPtIYA"
C = "/cgi-bin/component"
RID = "rid: 65f1a2b3-1c2d3e4f-5a6b7c8d"


@pytest.fixture
def server():
    fake = FakeWeChat().start()
    yield fake
    fake.stop()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(server: FakeWeChat, sleeps: list[float]) -> ComponentClient:
    session = requests.Session()
    session.trust_env = False  # never route 127.0.0.1 through an environment proxy
    return ComponentClient(
        APPID, SECRET, api_base=server.url, session=session, timeout=(2, 2), sleep=sleeps.append
    )


QUERY_AUTH = {
    "authorization_info": {
        "authorizer_appid": "wxf8b4f85f3a794e77",
        "authorizer_access_token": "QXjUqNqfYVH0yBE1iI_7vuN_9gQbpjfK7hYwJ3P7xOa88a89-Aga5x1NMYJyB8",
        "expires_in": 7200,
        "authorizer_refresh_token": "dTo-YCXPL4llX-u1W1pPpnp8Hgm4wpJtlR6iV0doKdY",
        "func_info": [
            {"funcscope_category": {"id": 1}},
            {
                "funcscope_category": {"id": 18},
                "confirm_info": {"need_confirm": 0, "already_confirm": 0, "can_confirm": 0},
            },
            {"funcscope_category": {}},
            "garbage",
        ],
    }
}
AUTHORIZER_INFO_MP = {
    "authorizer_info": {
        "nick_name": "美妆饰品",
        "head_img": "http://wx.qlogo.cn/mmopen/x/0",
        "service_type_info": {"id": 0},
        "verify_type_info": {"id": -1},
        "user_name": "gh_c43395cb652e",
        "alias": "",
        "qrcode_url": "http://mmbiz.qpic.cn/x/0",
        "business_info": {
            "open_pay": 0,
            "open_shake": 0,
            "open_scan": 0,
            "open_card": 0,
            "open_store": 0,
        },
        "idc": 1,
        "principal_name": "个人",
        "signature": "desc",
        "MiniProgramInfo": {
            "network": {"RequestDomain": ["https://weixin.qq.com"], "WsRequestDomain": []},
            "categories": [{"first": "生活服务", "second": "丽人服务"}],
            "visit_status": 0,
        },
        "register_type": 0,
        "account_status": 1,
        "basic_config": {"is_phone_configured": True, "is_email_configured": True},
    },
    "authorization_info": {
        "authorizer_appid": "wx326eecacf7370d4e",
        "authorizer_refresh_token": "refreshtoken@@@RU0Sgi7bD6apS7frS9gj8Sbws7OoDejK9Z-cm0EnCzg",
        "func_info": [
            {
                "funcscope_category": {"id": 3},
                "confirm_info": {"need_confirm": 0, "already_confirm": 0, "can_confirm": 0},
            },
            {"funcscope_category": {"id": 17}},
        ],
    },
}


def test_component_token(client: ComponentClient, server: FakeWeChat) -> None:
    server.script(
        f"{C}/api_component_token", {"component_access_token": CTOKEN, "expires_in": 7200}
    )
    result = client.component_token("ticket@@@abc")
    assert (result.component_access_token, result.expires_in) == (CTOKEN, 7200)
    (seen,) = server.requests
    assert seen.query == {}
    assert seen.body == {
        "component_appid": APPID,
        "component_appsecret": SECRET,
        "component_verify_ticket": "ticket@@@abc",
    }
    assert seen.content_type.startswith("application/json")
    assert CTOKEN not in repr(result) and SECRET not in repr(client)


def test_create_preauthcode(client: ComponentClient, server: FakeWeChat) -> None:
    code = "preauthcode@@@Cx_Dk6qiBE0Dmx4EmlT3oRfArPvwSQ-oa3NL_fwHM7VI08r52wazoZX2Rhpz1dEw"
    server.script(f"{C}/api_create_preauthcode", {"pre_auth_code": code, "expires_in": 600})
    result = client.create_preauthcode(CTOKEN)
    assert (result.pre_auth_code, result.expires_in) == (code, 600)
    assert server.requests[0].query == {"component_access_token": [CTOKEN]}
    assert server.requests[0].body == {"component_appid": APPID}


def test_query_auth(client: ComponentClient, server: FakeWeChat) -> None:
    server.script(f"{C}/api_query_auth", QUERY_AUTH)
    info = client.query_auth(CTOKEN, "queryauthcode@@@x")
    assert info.authorizer_appid == "wxf8b4f85f3a794e77"
    assert info.expires_in == 7200 and info.authorizer_access_token.startswith("QXjU")
    assert info.authorizer_refresh_token == "dTo-YCXPL4llX-u1W1pPpnp8Hgm4wpJtlR6iV0doKdY"
    assert info.permission_set_ids == (1, 18)
    assert info.func_info[1].confirm_info == {
        "need_confirm": 0,
        "already_confirm": 0,
        "can_confirm": 0,
    }
    assert info.func_info[0].confirm_info is None
    assert server.requests[0].body["authorization_code"] == "queryauthcode@@@x"


def test_query_auth_without_access_token(client: ComponentClient, server: FakeWeChat) -> None:
    # An account without API permissions gets no access token (§3.3).
    server.script(
        f"{C}/api_query_auth",
        {
            "authorization_info": {
                "authorizer_appid": "wxa",
                "authorizer_refresh_token": "r",
                "func_info": [],
            }
        },
    )
    info = client.query_auth(CTOKEN, "c")
    assert info.authorizer_access_token is None and info.expires_in is None
    assert info.permission_set_ids == ()


def test_authorizer_token(client: ComponentClient, server: FakeWeChat) -> None:
    server.script(
        f"{C}/api_authorizer_token",
        {
            "authorizer_access_token": "some-access-token",
            "expires_in": 7200,
            "authorizer_refresh_token": "refresh_token_value",
        },
    )
    result = client.authorizer_token(CTOKEN, "wxa", "refresh_token_value")
    assert (result.authorizer_access_token, result.expires_in, result.authorizer_refresh_token) == (
        "some-access-token",
        7200,
        "refresh_token_value",
    )
    assert server.requests[0].body == {
        "component_appid": APPID,
        "authorizer_appid": "wxa",
        "authorizer_refresh_token": "refresh_token_value",
    }


def test_get_authorizer_info_mini_program(client: ComponentClient, server: FakeWeChat) -> None:
    server.script(f"{C}/api_get_authorizer_info", AUTHORIZER_INFO_MP)
    details = client.get_authorizer_info(CTOKEN, "wx326eecacf7370d4e")
    info = details.authorizer_info
    assert info.nick_name == "美妆饰品" and info.user_name == "gh_c43395cb652e"
    assert info.is_mini_program and info.account_type == "mini_program"
    assert info.service_type_id == 0 and info.verify_type_id == -1 and not info.is_verified
    assert info.account_status == 1 and info.principal_name == "个人"
    assert info.mini_program_info["categories"][0]["first"] == "生活服务"
    assert info.raw["basic_config"]["is_phone_configured"] is True
    assert details.authorization_info.permission_set_ids == (3, 17)
    assert details.authorization_info.authorizer_refresh_token.startswith("refreshtoken@@@")


def test_get_authorizer_info_official_account(client: ComponentClient, server: FakeWeChat) -> None:
    payload = {
        "authorizer_info": {
            "nick_name": "OA",
            "service_type_info": {"id": 2},
            "verify_type_info": {"id": 0},
            "user_name": "gh_1",
            "alias": "oa",
        },
        "authorization_info": {
            "authorizer_appid": "wxo",
            "func_info": [{"funcscope_category": {"id": 1}}, {"funcscope_category": {"id": 1}}],
        },
    }
    server.script(f"{C}/api_get_authorizer_info", payload)
    details = client.get_authorizer_info(CTOKEN, "wxo")
    assert details.authorizer_info.account_type == "official_account"
    assert details.authorizer_info.is_verified and details.authorizer_info.service_type_id == 2
    assert details.authorization_info.permission_set_ids == (1,)


def _page(total: int, start: int, n: int) -> dict:
    return {
        "total_count": total,
        "list": [
            {
                "authorizer_appid": f"wx{i}",
                "refresh_token": f"rt{i}" if i % 2 else "",
                "auth_time": 1558000607,
            }
            for i in range(start, start + n)
        ],
    }


def test_iter_authorizers_pages_to_the_end(client: ComponentClient, server: FakeWeChat) -> None:
    path = f"{C}/api_get_authorizer_list"
    server.script(path, _page(5, 0, 2), _page(5, 2, 2), _page(5, 4, 1))
    items = list(client.iter_authorizers(CTOKEN, page_size=2))
    assert [i.authorizer_appid for i in items] == [f"wx{i}" for i in range(5)]
    assert items[0].refresh_token == "" and items[1].refresh_token == "rt1"
    assert [s.body["offset"] for s in server.hits(path)] == [0, 2, 4]
    assert {s.body["count"] for s in server.hits(path)} == {2}


def test_iter_authorizers_stops_on_empty_page(client: ComponentClient, server: FakeWeChat) -> None:
    path = f"{C}/api_get_authorizer_list"
    server.script(path, _page(10, 0, 3), {"total_count": 10, "list": []})
    assert len(list(client.iter_authorizers(CTOKEN, page_size=3))) == 3
    assert len(server.hits(path)) == 2
    with pytest.raises(ValueError):
        list(client.iter_authorizers(CTOKEN, page_size=501))


def test_authorizer_options(client: ComponentClient, server: FakeWeChat) -> None:
    server.script(
        f"{C}/api_get_authorizer_option",
        {
            "authorizer_appid": "wx7bc5ba58cabd00f4",
            "option_name": "voice_recognize",
            "option_value": "1",
        },
    )
    option = client.get_authorizer_option(CTOKEN, "wx7bc5ba58cabd00f4", "voice_recognize")
    assert (option.option_name, option.option_value) == ("voice_recognize", "1")
    client.set_authorizer_option(CTOKEN, "wx7bc5ba58cabd00f4", "location_report", "2")
    assert server.hits(f"{C}/api_set_authorizer_option")[0].body["option_value"] == "2"
    server.script(
        f"{C}/api_set_authorizer_option", {"errcode": 61013, "errmsg": "invalid option value"}
    )
    with pytest.raises(errors.ApiError) as info:
        client.set_authorizer_option(CTOKEN, "wxa", "location_report", "9")
    assert info.value.errcode == 61013


@pytest.mark.parametrize("errmsg,running", [("ok", False), ("in a normal state", True)])
def test_start_push_ticket(client: ComponentClient, server: FakeWeChat, errmsg, running) -> None:
    server.script(f"{C}/api_start_push_ticket", {"errcode": 0, "errmsg": errmsg})
    assert client.start_push_ticket().already_running is running
    assert server.requests[0].body == {"component_appid": APPID, "component_secret": SECRET}


def test_clear_quota_both_forms(client: ComponentClient, server: FakeWeChat) -> None:
    client.clear_quota(CTOKEN)
    seen = server.hits("/cgi-bin/clear_quota")[0]
    assert seen.query == {"access_token": [CTOKEN]} and seen.body == {"appid": APPID}
    client.clear_quota_v2(authorizer_appid="wxa")
    seen = server.hits(f"{C}/clear_quota/v2")[0]
    assert seen.body == {"component_appid": APPID, "appsecret": SECRET, "appid": "wxa"}


def test_send_custom_message_utf8(client: ComponentClient, server: FakeWeChat) -> None:
    client.send_custom_message("authorizer-token", "openid1", "你好 code_from_api")
    seen = server.hits("/cgi-bin/message/custom/send")[0]
    assert seen.query == {"access_token": ["authorizer-token"]}
    assert seen.body == {
        "touser": "openid1",
        "msgtype": "text",
        "text": {"content": "你好 code_from_api"},
    }
    assert "你好".encode() in seen.raw  # sent as UTF-8, not \\u escapes


# --- errors ------------------------------------------------------------------------------------

MAPPED = [
    (40001, errors.InvalidCredential),
    (40014, errors.InvalidCredential),
    (42001, errors.InvalidCredential),
    (45009, errors.QuotaExceeded),
    (61003, errors.NotAuthorized),
    (61005, errors.TicketInvalid),
    (61006, errors.TicketInvalid),
    (61009, errors.CodeInvalid),
    (61010, errors.CodeInvalid),
    (61023, errors.InvalidRefreshToken),
    (61004, errors.IpNotWhitelisted),
    (40164, errors.IpNotWhitelisted),
    (48001, errors.ApiError),
]


@pytest.mark.parametrize("code,cls", MAPPED)
def test_mapped_error_codes(client: ComponentClient, server: FakeWeChat, code: int, cls) -> None:
    server.script(f"{C}/api_create_preauthcode", {"errcode": code, "errmsg": f"some text {RID}"})
    with pytest.raises(cls) as info:
        client.create_preauthcode(CTOKEN)
    err = info.value
    assert type(err) is cls and isinstance(err, errors.WeChatError)
    assert (err.errcode, err.rid) == (code, "65f1a2b3-1c2d3e4f-5a6b7c8d")
    assert CTOKEN not in str(err) and CTOKEN not in repr(err)
    if cls is errors.InvalidCredential:
        assert err.token == CTOKEN
    assert len(server.requests) == 1  # never retried


def test_legacy_hint_and_missing_rid(client: ComponentClient, server: FakeWeChat) -> None:
    path = f"{C}/api_create_preauthcode"
    server.script(
        path,
        {"errcode": 61006, "errmsg": "component ticket is invalid hint: [Ab12]"},
        {"errcode": 61006},
    )
    with pytest.raises(errors.TicketInvalid) as info:
        client.create_preauthcode(CTOKEN)
    assert info.value.rid == "Ab12"
    with pytest.raises(errors.TicketInvalid) as info:
        client.create_preauthcode(CTOKEN)
    assert info.value.rid is None and info.value.errmsg == ""


def test_credential_error_on_token_fetch_has_no_token(client, server: FakeWeChat) -> None:
    server.script(f"{C}/api_component_token", {"errcode": 40001, "errmsg": "invalid credential"})
    with pytest.raises(errors.InvalidCredential) as info:
        client.component_token("t")
    assert info.value.token is None


def test_system_busy_is_retried_then_succeeds(client, server: FakeWeChat, sleeps) -> None:
    path = f"{C}/api_create_preauthcode"
    busy = {"errcode": -1, "errmsg": f"system error {RID}"}
    server.script(path, busy, busy, {"pre_auth_code": "p", "expires_in": 600})
    assert client.create_preauthcode(CTOKEN).pre_auth_code == "p"
    assert len(server.hits(path)) == 3 and len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0  # equal-jitter exponential


def test_system_busy_retries_are_bounded(client, server: FakeWeChat, sleeps) -> None:
    path = f"{C}/api_query_auth"  # −1 is retried even for single-use calls: nothing happened
    server.script(path, {"errcode": -1, "errmsg": "system error"})
    with pytest.raises(errors.SystemBusy):
        client.query_auth(CTOKEN, "c")
    assert len(server.hits(path)) == 3 and len(sleeps) == 2


def test_backoff_is_capped(server: FakeWeChat) -> None:
    delays: list[float] = []
    client = ComponentClient(
        APPID,
        SECRET,
        api_base=server.url,
        retries=6,
        backoff_base=1,
        backoff_max=2,
        sleep=delays.append,
    )
    server.script(f"{C}/api_create_preauthcode", {"errcode": -1})
    with pytest.raises(errors.SystemBusy):
        client.create_preauthcode(CTOKEN)
    assert len(delays) == 6 and max(delays) <= 2 and min(delays) >= 0.5


def test_timeouts_retried_only_for_idempotent_calls(server: FakeWeChat, sleeps) -> None:
    client = ComponentClient(
        APPID, SECRET, api_base=server.url, timeout=(1, 0.2), retries=2, sleep=sleeps.append
    )
    server.script(f"{C}/api_create_preauthcode", Reply({"pre_auth_code": "p"}, delay=0.6))
    with pytest.raises(errors.TransportError):
        client.create_preauthcode(CTOKEN)
    assert len(server.hits(f"{C}/api_create_preauthcode")) == 3
    server.script(f"{C}/api_query_auth", Reply(QUERY_AUTH, delay=0.6))
    with pytest.raises(errors.TransportError):
        client.query_auth(CTOKEN, "queryauthcode@@@x")  # maybe consumed: never resent
    assert len(server.hits(f"{C}/api_query_auth")) == 1


def test_connection_refused_is_retried_even_for_single_use_calls(sleeps) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = ComponentClient(
        APPID, SECRET, api_base=f"http://127.0.0.1:{port}", retries=3, sleep=sleeps.append
    )
    with pytest.raises(errors.TransportError) as info:
        client.query_auth(CTOKEN, "c")
    assert len(sleeps) == 3 and CTOKEN not in str(info.value)


def test_http_5xx_retried_4xx_not(client, server: FakeWeChat) -> None:
    path = f"{C}/api_create_preauthcode"
    server.script(path, Reply(b"oops", status=502), {"pre_auth_code": "p", "expires_in": 600})
    assert client.create_preauthcode(CTOKEN).pre_auth_code == "p"
    assert len(server.hits(path)) == 2
    server.script(f"{C}/api_authorizer_token", Reply(b"nope", status=404))
    with pytest.raises(errors.TransportError):
        client.authorizer_token(CTOKEN, "a", "r")
    assert len(server.hits(f"{C}/api_authorizer_token")) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"<html>not json</html>",
        b"[1, 2]",
        b'{"errcode": "x"}',
        b'{"expires_in": 600}',
        b'{"pre_auth_code": 5, "expires_in": 600}',
        b"\xff\xfe",
    ],
)
def test_unexpected_answers(client, server: FakeWeChat, body: bytes) -> None:
    server.script(f"{C}/api_create_preauthcode", Reply(body))
    with pytest.raises(errors.UnexpectedResponse):
        client.create_preauthcode(CTOKEN)


def test_no_secrets_in_logs(client, server: FakeWeChat, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="app.wechat")
    server.script(
        f"{C}/api_component_token",
        {"errcode": -1, "errmsg": "busy"},
        {"errcode": 61005, "errmsg": f"component ticket is expired {RID}"},
    )
    with pytest.raises(errors.TicketInvalid):
        client.component_token("ticket@@@verysecret")
    server.script(f"{C}/api_create_preauthcode", {"errcode": 40001, "errmsg": "invalid credential"})
    with pytest.raises(errors.InvalidCredential):
        client.create_preauthcode(CTOKEN)
    assert caplog.records  # something was logged ...
    for secret in (SECRET, "ticket@@@verysecret", CTOKEN):
        assert secret not in caplog.text  # ... but never a secret


def test_constructor_validation() -> None:
    with pytest.raises(ValueError):
        ComponentClient("", SECRET)
    with pytest.raises(ValueError):
        ComponentClient(APPID, SECRET, retries=-1)
