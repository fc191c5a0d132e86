"""GRANTDESK_TRUSTED_PROXIES: forwarded headers are believed from that many hops, else ignored."""

import pytest
from flask import request

from app import create_app
from tests.unit.test_config import GOOD_PRODUCTION

FORWARDED = {
    "X-Forwarded-For": "198.51.100.20",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "portal.example.com",
}


def _production(**overrides):
    app = create_app({**GOOD_PRODUCTION, **overrides})

    @app.get("/_probe")
    def probe():
        return {"addr": request.remote_addr, "secure": request.is_secure, "host": request.host}

    return app


def test_behind_one_trusted_proxy_the_client_scheme_and_host_are_real():
    client = _production(GRANTDESK_TRUSTED_PROXIES=1).test_client()
    response = client.get(
        "/_probe",
        base_url="http://localhost",
        headers=FORWARDED,
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    )
    assert response.json == {
        "addr": "198.51.100.20",
        "secure": True,
        "host": "portal.example.com",
    }
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
    # Redirects name the public https origin.
    login = client.get("/", base_url="http://localhost", headers=FORWARDED)
    assert login.headers["Location"].startswith(("/login", "https://portal.example.com/login"))


@pytest.mark.parametrize("overrides", [{}, {"GRANTDESK_TRUSTED_PROXIES": 0}])
def test_without_the_setting_forwarded_headers_are_ignored(overrides):
    client = _production(**overrides).test_client()
    response = client.get(
        "/_probe",
        base_url="http://localhost",
        headers=FORWARDED,
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    )
    assert response.json == {"addr": "10.0.0.2", "secure": False, "host": "localhost"}
    assert "Strict-Transport-Security" not in response.headers


def test_only_the_configured_number_of_hops_is_believed():
    client = _production(GRANTDESK_TRUSTED_PROXIES=1).test_client()
    spoofed = {**FORWARDED, "X-Forwarded-For": "6.6.6.6, 198.51.100.20"}
    response = client.get("/_probe", headers=spoofed, environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert response.json["addr"] == "198.51.100.20"
