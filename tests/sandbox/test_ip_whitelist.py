"""The platform's IP whitelist (WeChat's 61004) in the sandbox and the client's IpNotWhitelisted."""

import pytest

from app.sandbox import create_app
from app.wechat.client import ComponentClient
from app.wechat.errors import IpNotWhitelisted

TOKEN_API = "component/api_component_token"


def _token_body(sandbox, ticket):
    return {
        "component_appid": sandbox.component_appid,
        "component_appsecret": sandbox.component_secret,
        "component_verify_ticket": ticket,
    }


def test_calls_from_an_address_off_the_whitelist_get_61004(sandbox):
    ticket = sandbox.push_ticket()
    platform = sandbox.configure(ip_whitelist=["10.20.30.40", "192.0.2.7"])
    assert platform["ip_whitelist"] == ["10.20.30.40", "192.0.2.7"]
    refused = sandbox.wechat(TOKEN_API, _token_body(sandbox, ticket))
    assert refused["errcode"] == 61004
    assert refused["errmsg"].startswith("access clientip is not registered requestIP: 127.0.0.1")
    assert " rid: " in refused["errmsg"]
    assert sandbox.api_calls()["api_component_token"] == 1  # refused calls count too

    sandbox.configure(ip_whitelist=["10.20.30.40", "127.0.0.1"])
    assert "component_access_token" in sandbox.wechat(TOKEN_API, _token_body(sandbox, ticket))
    sandbox.configure(ip_whitelist=[])  # empty = every address
    assert "component_access_token" in sandbox.wechat(TOKEN_API, _token_body(sandbox, ticket))


def test_the_whitelist_reaches_every_component_api_and_reset_clears_it(sandbox):
    token = sandbox.component_token()
    sandbox.configure(ip_whitelist="10.0.0.1")
    answer = sandbox.wechat(
        "component/api_get_authorizer_list",
        {"component_appid": sandbox.component_appid},
        token=token,
    )
    assert answer["errcode"] == 61004
    sandbox.reset()
    assert sandbox.state()["platform"]["ip_whitelist"] == []


def test_a_bad_whitelist_is_refused_and_changes_nothing(sandbox):
    sandbox.control("platform", {"ip_whitelist": 5}, expect=400)
    sandbox.control("platform", {"ip_whitelist": ["10.0.0.1"], "bogus": 1}, expect=400)
    assert sandbox.state()["platform"]["ip_whitelist"] == []


def test_the_environment_variable_sets_the_whitelist(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDBOX_IP_WHITELIST", " 10.0.0.1, ,127.0.0.1 ")
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/s.sqlite", "SANDBOX_TICKET_INTERVAL": 0}
    )
    assert app.config["SANDBOX_IP_WHITELIST"] == ["10.0.0.1", "127.0.0.1"]
    monkeypatch.setenv("SANDBOX_IP_WHITELIST", "")
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/t.sqlite", "SANDBOX_TICKET_INTERVAL": 0}
    )
    assert app.config["SANDBOX_IP_WHITELIST"] == []


def test_client_raises_ip_not_whitelisted_with_a_remedy(sandbox):
    ticket = sandbox.push_ticket()
    sandbox.configure(ip_whitelist=["10.20.30.40"])
    client = ComponentClient(
        sandbox.component_appid, sandbox.component_secret, api_base=sandbox.url, retries=2
    )
    with pytest.raises(IpNotWhitelisted) as raised:
        client.component_token(ticket)
    assert raised.value.errcode == 61004
    assert raised.value.client_ip == "127.0.0.1"
    assert "whitelist" in raised.value.remedy and "127.0.0.1" in raised.value.remedy
    assert sandbox.api_calls()["api_component_token"] == 1  # not retried: it will not heal alone
