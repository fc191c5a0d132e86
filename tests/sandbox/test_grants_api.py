"""Consent, code exchange, authorizer tokens, info/list, update and revoke over real HTTP."""

from tests.sandbox.test_tokens_api import assert_error


def query_auth(sandbox, token, code):
    return sandbox.wechat(
        "component/api_query_auth",
        {"component_appid": sandbox.component_appid, "authorization_code": code},
        token=token,
    )


def refresh(sandbox, token, appid, refresh_token):
    return sandbox.wechat(
        "component/api_authorizer_token",
        {
            "component_appid": sandbox.component_appid,
            "authorizer_appid": appid,
            "authorizer_refresh_token": refresh_token,
        },
        token=token,
    )


def test_consent_redirect_keeps_query_string(sandbox):
    token = sandbox.component_token()
    result = sandbox.authorize(token, redirect_uri="https://portal.example/back?session=abc#x")
    assert result["redirect_url"].startswith("https://portal.example/back?session=abc&auth_code=")
    assert result["redirect_url"].endswith("&expires_in=3600#x")
    assert result["expires_in"] == 3600
    assert result["auth_code"].startswith("queryauthcode@@@")
    assert result["info_type"] == "authorized"


def test_query_auth_is_single_use(sandbox):
    token = sandbox.component_token()
    result = sandbox.authorize(token, permission_set_ids=[1, 2])
    info = query_auth(sandbox, token, result["auth_code"])["authorization_info"]
    assert info["authorizer_appid"] == result["account"]["appid"]
    assert info["expires_in"] == 7200
    assert info["authorizer_refresh_token"].startswith("refreshtoken@@@")
    assert [f["funcscope_category"]["id"] for f in info["func_info"]] == [1, 2]
    assert_error(query_auth(sandbox, token, result["auth_code"]), 61009)
    assert_error(query_auth(sandbox, token, "queryauthcode@@@nope"), 61009)
    assert sandbox.api_calls()["api_query_auth"] == 3


def test_auth_code_expires_after_an_hour(sandbox):
    token = sandbox.component_token()
    result = sandbox.authorize(token)
    sandbox.clock(3601)
    token = sandbox.component_token()
    assert_error(query_auth(sandbox, token, result["auth_code"]), 61010)


def test_pre_auth_code_single_use_and_expiry(sandbox):
    token = sandbox.component_token()
    account = sandbox.account(scenario="fresh")
    code = sandbox.pre_auth_code(token)
    sandbox.consent(code, account["admin"], account["appid"], [1])
    again = sandbox.consent(code, account["admin"], account["appid"], [1], expect=400)
    assert again["error"] == "pre_auth_code_invalid"
    late = sandbox.pre_auth_code(token)
    sandbox.clock(601)
    assert (
        sandbox.consent(late, account["admin"], account["appid"], [1], expect=400)["error"]
        == "pre_auth_code_invalid"
    )


def test_consent_rules(sandbox):
    token = sandbox.component_token()
    state = sandbox.state()
    held = sandbox.account(scenario="exclusive_elsewhere", type="official_account")
    full = sandbox.account(scenario="provider_limit")
    other_user = next(u["id"] for u in state["wechat_users"] if u["id"] != held["admin"])

    def refused(user, account, sets):
        return sandbox.consent(
            sandbox.pre_auth_code(token), user, account["appid"], sets, expect=400
        )["error"]

    assert refused(other_user, held, [1]) == "not_admin"
    assert refused(held["admin"], held, [4]) == "exclusive_held"
    assert refused(held["admin"], held, [17]) == "unknown_sets"
    assert refused(held["admin"], held, []) == "no_sets"
    assert refused(full["admin"], full, [17]) == "provider_limit"
    ok = sandbox.consent(sandbox.pre_auth_code(token), held["admin"], held["appid"], [1, 2])
    assert ok["info_type"] == "authorized"


def test_authorizer_token_refresh_and_overlap(sandbox):
    token = sandbox.component_token()
    result = sandbox.authorize(token)
    appid = result["account"]["appid"]
    info = query_auth(sandbox, token, result["auth_code"])["authorization_info"]
    first = info["authorizer_access_token"]
    refreshed = refresh(sandbox, token, appid, info["authorizer_refresh_token"])
    assert refreshed["authorizer_refresh_token"] == info["authorizer_refresh_token"]
    assert refreshed["authorizer_access_token"] != first
    assert_error(refresh(sandbox, token, appid, "refreshtoken@@@wrong"), 61023)
    assert_error(refresh(sandbox, token, "wx" + "0" * 16, "x"), 40013)
    unauthorized = sandbox.account(scenario="exclusive_elsewhere", type="mini_program")["appid"]
    assert_error(refresh(sandbox, token, unauthorized, "x"), 61003)


def test_reauthorization_changes_refresh_token_with_transition(sandbox):
    token = sandbox.component_token()
    first = sandbox.authorize(token, permission_set_ids=[1, 2])
    appid = first["account"]["appid"]
    old = query_auth(sandbox, token, first["auth_code"])["authorization_info"]
    second = sandbox.authorize(token, permission_set_ids=[1, 2, 3])
    assert second["info_type"] == "updateauthorized"
    new = query_auth(sandbox, token, second["auth_code"])["authorization_info"]
    assert new["authorizer_refresh_token"] != old["authorizer_refresh_token"]
    assert "authorizer_access_token" in refresh(
        sandbox, token, appid, old["authorizer_refresh_token"]
    )
    sandbox.clock(301)
    token = sandbox.component_token()
    assert_error(refresh(sandbox, token, appid, old["authorizer_refresh_token"]), 61023)
    same = sandbox.authorize(token, permission_set_ids=[1, 2, 3])
    assert same["info_type"] is None  # unchanged sets: no updateauthorized push


def test_revoke_kills_refresh_token(sandbox):
    token = sandbox.component_token()
    result = sandbox.authorize(token)
    appid = result["account"]["appid"]
    info = query_auth(sandbox, token, result["auth_code"])["authorization_info"]
    sandbox.revoke(appid)
    assert_error(refresh(sandbox, token, appid, info["authorizer_refresh_token"]), 61003)
    again = sandbox.authorize(token)
    info2 = query_auth(sandbox, token, again["auth_code"])["authorization_info"]
    assert info2["authorizer_refresh_token"] != info["authorizer_refresh_token"]


def test_get_authorizer_info_and_list(sandbox):
    token = sandbox.component_token()
    oa = sandbox.authorize(token, permission_set_ids=[1, 3])
    mp = sandbox.authorize(token, type="mini_program", permission_set_ids=[17, 19])
    body = {"component_appid": sandbox.component_appid, "authorizer_appid": mp["account"]["appid"]}
    info = sandbox.wechat("component/api_get_authorizer_info", body, token=token)
    assert info["authorizer_info"]["nick_name"] == mp["account"]["nick_name"]
    assert "MiniProgramInfo" in info["authorizer_info"]
    assert info["authorization_info"]["authorizer_refresh_token"].startswith("refreshtoken@@@")
    head = sandbox.http.get(info["authorizer_info"]["head_img"])
    assert head.headers["Content-Type"].startswith("image/svg+xml")
    qr = sandbox.http.get(info["authorizer_info"]["qrcode_url"])
    assert b"<svg" in qr.content
    oa_info = sandbox.wechat(
        "component/api_get_authorizer_info",
        {**body, "authorizer_appid": oa["account"]["appid"]},
        token=token,
    )
    assert "MiniProgramInfo" not in oa_info["authorizer_info"]

    query_auth(sandbox, token, oa["auth_code"])
    listing = sandbox.wechat(
        "component/api_get_authorizer_list",
        {"component_appid": sandbox.component_appid, "offset": 0, "count": 500},
        token=token,
    )
    by_appid = {item["authorizer_appid"]: item for item in listing["list"]}
    # the ten release-test accounts are authorized too
    assert listing["total_count"] == len(listing["list"]) == 12
    assert by_appid[oa["account"]["appid"]]["refresh_token"].startswith("refreshtoken@@@")
    assert by_appid[mp["account"]["appid"]]["refresh_token"] == ""  # never exchanged
    page = sandbox.wechat(
        "component/api_get_authorizer_list",
        {"component_appid": sandbox.component_appid, "offset": 11, "count": 2},
        token=token,
    )
    assert page["total_count"] == 12 and len(page["list"]) == 1


def test_rotated_refresh_token_recovers_from_info(sandbox):
    token = sandbox.component_token()
    result = sandbox.authorize(token)
    appid = result["account"]["appid"]
    info = query_auth(sandbox, token, result["auth_code"])["authorization_info"]
    sandbox.set_faults(rotate_refresh_token=appid)
    assert_error(refresh(sandbox, token, appid, info["authorizer_refresh_token"]), 61023)
    current = sandbox.wechat(
        "component/api_get_authorizer_info",
        {"component_appid": sandbox.component_appid, "authorizer_appid": appid},
        token=token,
    )
    new_refresh = current["authorization_info"]["authorizer_refresh_token"]
    assert "authorizer_access_token" in refresh(sandbox, token, appid, new_refresh)


def test_update_and_options(sandbox):
    token = sandbox.component_token()
    result = sandbox.authorize(token, permission_set_ids=[1, 2])
    appid = result["account"]["appid"]
    assert sandbox.update(appid, [1])["changed"] is True
    assert sandbox.update(appid, [1])["changed"] is False
    body = {
        "component_appid": sandbox.component_appid,
        "authorizer_appid": appid,
        "option_name": "voice_recognize",
    }
    assert (
        sandbox.wechat(
            "component/api_set_authorizer_option", {**body, "option_value": "1"}, token=token
        )["errcode"]
        == 0
    )
    got = sandbox.wechat("component/api_get_authorizer_option", body, token=token)
    assert got == {"authorizer_appid": appid, "option_name": "voice_recognize", "option_value": "1"}
    assert_error(
        sandbox.wechat(
            "component/api_set_authorizer_option", {**body, "option_value": "7"}, token=token
        ),
        61013,
    )


def test_custom_send_needs_authorizer_token(sandbox):
    token = sandbox.component_token()
    result = sandbox.authorize(token, permission_set_ids=[1, 2])
    info = query_auth(sandbox, token, result["auth_code"])["authorization_info"]
    message = {"touser": "openid123", "msgtype": "text", "text": {"content": "hi"}}
    sent = sandbox.wechat(
        "message/custom/send",
        message,
        token=info["authorizer_access_token"],
        token_name="access_token",
    )
    assert sent == {"errcode": 0, "errmsg": "ok"}
    assert sandbox.state()["custom_messages"][0]["content"] == "hi"
    assert_error(
        sandbox.wechat("message/custom/send", message, token=token, token_name="access_token"),
        40001,
    )
