"""Component token, pre_auth_code and ticket rules over real HTTP."""

import re

RID = re.compile(r" rid: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}$")


def token_body(sandbox, ticket, **changes):
    body = {
        "component_appid": sandbox.component_appid,
        "component_appsecret": sandbox.component_secret,
        "component_verify_ticket": ticket,
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def assert_error(result, errcode):
    assert result["errcode"] == errcode, result
    assert RID.search(result["errmsg"]), result


def test_component_token_success(sandbox):
    ticket = sandbox.push_ticket()
    result = sandbox.wechat("component/api_component_token", token_body(sandbox, ticket))
    assert result["expires_in"] == 7200
    assert re.fullmatch(r"\d+_[\w-]+", result["component_access_token"])
    assert "errcode" not in result


def test_component_token_errors(sandbox):
    ticket = sandbox.push_ticket()

    def call(**changes):
        body = token_body(sandbox, ticket, **changes)
        return sandbox.wechat("component/api_component_token", body)

    assert_error(call(component_appid=None), 41002)
    assert_error(call(component_appid="wx0000000000000000"), 61011)
    assert_error(call(component_appsecret=None), 41004)
    assert_error(call(component_appsecret="wrong"), 40125)
    assert_error(call(component_verify_ticket="ticket@@@forged"), 61006)
    assert_error(call(component_verify_ticket=None), 61006)
    response = sandbox.http.post(
        f"{sandbox.url}/cgi-bin/component/api_component_token", data="not json"
    )
    assert_error(response.json(), 47001)


def test_ticket_expires_after_12_hours(sandbox):
    ticket = sandbox.push_ticket()
    sandbox.clock(12 * 3600 - 5)
    assert "component_access_token" in sandbox.wechat(
        "component/api_component_token", token_body(sandbox, ticket)
    )
    sandbox.clock(12 * 3600 + 1)
    assert_error(
        sandbox.wechat("component/api_component_token", token_body(sandbox, ticket)), 61005
    )


def test_both_token_parameter_names_accepted(sandbox):
    token = sandbox.component_token()
    body = {"component_appid": sandbox.component_appid}
    for name in ("component_access_token", "access_token"):
        result = sandbox.wechat(
            "component/api_create_preauthcode", body, token=token, token_name=name
        )
        assert result["expires_in"] == 600
        assert result["pre_auth_code"].startswith("preauthcode@@@")


def test_token_errors(sandbox):
    sandbox.component_token()
    body = {"component_appid": sandbox.component_appid}
    assert_error(sandbox.wechat("component/api_create_preauthcode", body), 41001)
    assert_error(sandbox.wechat("component/api_create_preauthcode", body, token="1_bogus"), 40001)


def test_token_lifetime_and_expiry(sandbox):
    token = sandbox.component_token()
    body = {"component_appid": sandbox.component_appid}
    sandbox.clock(7199)
    assert "pre_auth_code" in sandbox.wechat("component/api_create_preauthcode", body, token=token)
    sandbox.clock(7200)
    assert_error(sandbox.wechat("component/api_create_preauthcode", body, token=token), 42001)


def test_old_token_overlaps_five_minutes_after_refresh(sandbox):
    old = sandbox.component_token()
    sandbox.clock(1000)
    new = sandbox.component_token()
    assert new != old
    body = {"component_appid": sandbox.component_appid}
    sandbox.clock(1000 + 299)
    assert "pre_auth_code" in sandbox.wechat("component/api_create_preauthcode", body, token=old)
    sandbox.clock(1000 + 301)
    assert_error(sandbox.wechat("component/api_create_preauthcode", body, token=old), 40001)
    assert "pre_auth_code" in sandbox.wechat("component/api_create_preauthcode", body, token=new)


def test_foreign_refresh_kills_current_token(sandbox):
    token = sandbox.component_token()
    sandbox.set_faults(foreign_refresh=True)
    body = {"component_appid": sandbox.component_appid}
    assert_error(sandbox.wechat("component/api_create_preauthcode", body, token=token), 40001)
    fresh = sandbox.component_token()
    assert "pre_auth_code" in sandbox.wechat("component/api_create_preauthcode", body, token=fresh)


def test_quota_returns_45009_and_clear_quota_resets(sandbox):
    token = sandbox.component_token()
    sandbox.quotas(api_create_preauthcode=2)
    body = {"component_appid": sandbox.component_appid}
    for _ in range(2):
        assert "pre_auth_code" in sandbox.wechat(
            "component/api_create_preauthcode", body, token=token
        )
    assert_error(sandbox.wechat("component/api_create_preauthcode", body, token=token), 45009)
    quota = sandbox.wechat(
        "openapi/quota/get",
        {"cgi_path": "/cgi-bin/component/api_create_preauthcode"},
        token=token,
        token_name="access_token",
    )
    assert quota["quota"] == {"daily_limit": 2, "used": 2, "remain": 0}
    cleared = sandbox.wechat(
        "clear_quota", {"appid": sandbox.component_appid}, token=token, token_name="access_token"
    )
    assert cleared == {"errcode": 0, "errmsg": "ok"}
    assert "pre_auth_code" in sandbox.wechat("component/api_create_preauthcode", body, token=token)


def test_quota_resets_next_beijing_day(sandbox):
    token = sandbox.component_token()
    sandbox.quotas(api_create_preauthcode=1)
    body = {"component_appid": sandbox.component_appid}
    assert "pre_auth_code" in sandbox.wechat("component/api_create_preauthcode", body, token=token)
    assert_error(sandbox.wechat("component/api_create_preauthcode", body, token=token), 45009)
    sandbox.clock(advance_seconds=3600)  # a new token: the old one would expire on the way
    token = sandbox.component_token()
    sandbox.clock(advance_seconds=86400 - 3600 - 60)
    token = sandbox.component_token()
    sandbox.clock(advance_seconds=61)
    assert "pre_auth_code" in sandbox.wechat("component/api_create_preauthcode", body, token=token)


def test_clear_quota_v2_and_monthly_limit(sandbox):
    body = {"component_appid": sandbox.component_appid, "appsecret": sandbox.component_secret}
    for _ in range(10):
        assert sandbox.wechat("component/clear_quota/v2", body)["errcode"] == 0
    assert_error(sandbox.wechat("component/clear_quota/v2", body), 48006)
    assert_error(sandbox.wechat("component/clear_quota/v2", {**body, "appsecret": "x"}), 40125)


def test_start_push_ticket(sandbox):
    body = {
        "component_appid": sandbox.component_appid,
        "component_secret": sandbox.component_secret,
    }
    sandbox.set_faults(pushes={"pause_tickets": True})
    assert sandbox.wechat("component/api_start_push_ticket", body) == {"errcode": 0, "errmsg": "ok"}
    again = sandbox.wechat("component/api_start_push_ticket", body)
    assert again == {"errcode": 0, "errmsg": "in a normal state"}
    assert sandbox.state()["faults"]["pushes"] == {}
    assert len(sandbox.deliveries("component_verify_ticket")) == 2
    assert_error(
        sandbox.wechat("component/api_start_push_ticket", {**body, "component_appid": "wx1"}), 40013
    )


def test_endpoint_faults(sandbox):
    token = sandbox.component_token()
    body = {"component_appid": sandbox.component_appid}
    sandbox.set_faults(endpoints={"api_create_preauthcode": {"errcode": -1, "times": 1}})
    assert_error(sandbox.wechat("component/api_create_preauthcode", body, token=token), -1)
    assert "pre_auth_code" in sandbox.wechat("component/api_create_preauthcode", body, token=token)
    sandbox.set_faults(endpoints={"api_create_preauthcode": {"errcode": 45009}})
    assert_error(sandbox.wechat("component/api_create_preauthcode", body, token=token), 45009)
    assert_error(sandbox.wechat("component/api_create_preauthcode", body, token=token), 45009)
    sandbox.set_faults(clear=True)
    assert "pre_auth_code" in sandbox.wechat("component/api_create_preauthcode", body, token=token)


def test_latency_fault(sandbox):
    import time

    token = sandbox.component_token()
    sandbox.set_faults(endpoints={"api_create_preauthcode": {"latency": 0.3}})
    started = time.monotonic()
    sandbox.wechat(
        "component/api_create_preauthcode",
        {"component_appid": sandbox.component_appid},
        token=token,
    )
    assert time.monotonic() - started >= 0.3


def test_api_calls_are_counted_per_path(sandbox):
    token = sandbox.component_token()
    sandbox.wechat("component/api_create_preauthcode", {"component_appid": "x"}, token=token)
    sandbox.wechat(
        "component/api_create_preauthcode",
        {"component_appid": sandbox.component_appid},
        token=token,
    )
    calls = sandbox.api_calls()
    assert calls["api_component_token"] == 1
    assert calls["api_create_preauthcode"] == 2
    assert "api_query_auth" not in calls


def test_failed_calls_count_but_spend_no_quota(sandbox):
    token = sandbox.component_token()
    body = {"component_appid": sandbox.component_appid}
    sandbox.wechat("component/api_create_preauthcode", {"component_appid": "x"}, token=token)
    sandbox.set_faults(endpoints={"api_create_preauthcode": {"errcode": -1, "times": 1}})
    assert_error(sandbox.wechat("component/api_create_preauthcode", body, token=token), -1)
    assert "pre_auth_code" in sandbox.wechat("component/api_create_preauthcode", body, token=token)
    assert sandbox.api_calls()["api_create_preauthcode"] == 3
    quota = sandbox.wechat(
        "openapi/quota/get",
        {"cgi_path": "/cgi-bin/component/api_create_preauthcode"},
        token=token,
        token_name="access_token",
    )
    assert quota["quota"]["used"] == 1
