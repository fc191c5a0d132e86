"""Transport faults per endpoint (HTTP 5xx, reset, non-JSON, timeout) over real HTTP, and how the
portal's ComponentClient maps each of them to a typed transient error that callers retry."""

import time

import pytest
import requests

from app.wechat.client import ComponentClient
from app.wechat.errors import TransportError, UnexpectedResponse

PREAUTH = "component/api_create_preauthcode"


def _raw(sandbox, token, timeout=10):
    """One api_create_preauthcode call as bytes on the wire (no client library in between)."""
    return sandbox.http.post(
        f"{sandbox.url}/cgi-bin/{PREAUTH}",
        params={"component_access_token": token},
        json={"component_appid": sandbox.component_appid},
        timeout=timeout,
    )


def _codes_minted(sandbox) -> int:
    return sum(1 for c in sandbox.state()["credentials"] if c["kind"] == "pre_auth_code")


def _client(sandbox, **kwargs) -> ComponentClient:
    options = {"api_base": sandbox.url, "retries": 2, "sleep": lambda _: None, **kwargs}
    return ComponentClient(sandbox.component_appid, sandbox.component_secret, **options)


def test_http_status_fault_answers_a_gateway_page_then_recovers(sandbox):
    token = sandbox.component_token()
    sandbox.set_faults(endpoints={"api_create_preauthcode": {"http_status": 502, "times": 2}})
    for _ in range(2):
        response = _raw(sandbox, token)
        assert response.status_code == 502
        assert response.headers["Content-Type"].startswith("text/html")
    assert _codes_minted(sandbox) == 0  # the request never reached WeChat's logic
    assert "pre_auth_code" in _raw(sandbox, token).json()
    assert sandbox.api_calls()["api_create_preauthcode"] == 3  # every call counts
    assert sandbox.state()["faults"]["endpoints"] == {}


def test_reset_fault_drops_the_connection_without_an_answer(sandbox):
    token = sandbox.component_token()
    sandbox.set_faults(endpoints={"api_create_preauthcode": {"reset": True, "times": 1}})
    with pytest.raises(requests.ConnectionError):
        _raw(sandbox, token)
    assert _codes_minted(sandbox) == 0
    assert "pre_auth_code" in _raw(sandbox, token).json()


def test_non_json_fault_answers_200_with_html(sandbox):
    token = sandbox.component_token()
    sandbox.set_faults(endpoints={"api_create_preauthcode": {"non_json": True}})
    response = _raw(sandbox, token)
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    assert _codes_minted(sandbox) == 0


def test_timeout_fault_hangs_past_the_client_timeout_until_cleared(sandbox):
    token = sandbox.component_token()
    sandbox.set_faults(endpoints={"api_create_preauthcode": {"timeout": True}})
    assert (
        sandbox.state()["faults"]["endpoints"]["api_create_preauthcode"]["timeout"]
        == (sandbox.app.config["SANDBOX_FAULT_HANG"])
    )
    with pytest.raises(requests.Timeout):
        _raw(sandbox, token, timeout=0.5)
    started = time.monotonic()
    sandbox.set_faults(clear=True)  # wakes the held request, which then drops its connection
    assert "pre_auth_code" in _raw(sandbox, token).json()
    assert time.monotonic() - started < sandbox.app.config["SANDBOX_FAULT_HANG"]
    assert _codes_minted(sandbox) == 1


def test_numeric_timeout_hangs_that_long_then_drops(sandbox):
    token = sandbox.component_token()
    sandbox.set_faults(endpoints={"api_create_preauthcode": {"timeout": 0.3, "times": 1}})
    started = time.monotonic()
    with pytest.raises(requests.ConnectionError):
        _raw(sandbox, token)
    assert time.monotonic() - started >= 0.3


def test_wildcard_transport_fault_hits_every_api(sandbox):
    token = sandbox.component_token()
    sandbox.set_faults(endpoints={"*": {"http_status": 503}})
    assert _raw(sandbox, token).status_code == 503
    response = sandbox.http.post(
        f"{sandbox.url}/cgi-bin/component/api_get_authorizer_list",
        params={"component_access_token": token},
        json={"component_appid": sandbox.component_appid},
    )
    assert response.status_code == 503


@pytest.mark.parametrize(
    "spec",
    [
        {"http_status": 200},
        {"http_status": "bad"},
        {"reset": True, "bogus": 1},
        {"timeout": -1},
        "not an object",
    ],
)
def test_bad_fault_specs_are_refused_and_change_nothing(sandbox, spec):
    before = sandbox.state()["faults"]
    answer = sandbox.control("faults", {"endpoints": {"api_query_auth": spec}}, expect=400)
    assert answer["error"] in ("bad_fault", "unknown_fault")
    assert sandbox.state()["faults"] == before


# --- the portal's client: every transport fault is a TransportError, retried when safe --------


@pytest.mark.parametrize(
    "fault",
    [{"http_status": 502}, {"reset": True}, {"non_json": True}, {"timeout": 5}],
    ids=["http_5xx", "reset", "non_json", "timeout"],
)
def test_client_maps_persistent_transport_faults_to_transport_error(sandbox, fault):
    token = sandbox.component_token()
    sandbox.set_faults(endpoints={"api_create_preauthcode": fault})
    client = _client(sandbox, timeout=(1, 0.5))
    with pytest.raises(TransportError):
        client.create_preauthcode(token)
    sandbox.set_faults(clear=True)
    assert sandbox.api_calls()["api_create_preauthcode"] == 3  # one call and two retries


@pytest.mark.parametrize(
    "fault",
    [{"http_status": 502}, {"reset": True}, {"non_json": True}, {"timeout": 5}],
    ids=["http_5xx", "reset", "non_json", "timeout"],
)
def test_client_retries_a_transient_transport_fault(sandbox, fault):
    token = sandbox.component_token()
    sandbox.set_faults(endpoints={"api_create_preauthcode": {**fault, "times": 2}})
    code = _client(sandbox, timeout=(1, 0.5)).create_preauthcode(token)
    assert code.pre_auth_code.startswith("preauthcode@@@")
    sandbox.set_faults(clear=True)
    assert _codes_minted(sandbox) == 1


def test_client_never_resends_a_single_use_call_that_may_have_arrived(sandbox):
    token = sandbox.component_token()
    sandbox.set_faults(endpoints={"api_query_auth": {"http_status": 502}})
    with pytest.raises(TransportError):
        _client(sandbox).query_auth(token, "queryauthcode@@@whatever")
    assert sandbox.api_calls()["api_query_auth"] == 1


def test_non_json_is_an_unexpected_response(sandbox):
    token = sandbox.component_token()
    sandbox.set_faults(endpoints={"api_create_preauthcode": {"non_json": True}})
    with pytest.raises(UnexpectedResponse):
        _client(sandbox, retries=0).create_preauthcode(token)
