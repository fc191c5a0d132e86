"""Request ids (honoured and echoed) and JSON log lines with GRANTDESK_LOG_FORMAT=json."""

import io
import json
import logging

import pytest

from app import create_app, logs
from app.extensions import db
from tests.conftest import database_url


@pytest.fixture
def json_app(tmp_path):
    app = create_app(
        {
            "ENV_NAME": "test",
            "SQLALCHEMY_DATABASE_URI": database_url(tmp_path),
            "GRANTDESK_LOG_FORMAT": "json",
        }
    )
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "grantdesk_json", False))
    stream = io.StringIO()
    handler.setStream(stream)
    with app.app_context():
        db.create_all()
    yield app, stream
    logging.getLogger().removeHandler(handler)
    with app.app_context():
        db.drop_all()
        db.engine.dispose()


def lines(stream) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_an_incoming_request_id_is_honoured_and_echoed(client):
    response = client.get("/login", headers={"X-Request-ID": "lb-1234.abc"})
    assert response.headers["X-Request-ID"] == "lb-1234.abc"
    made = client.get("/login").headers["X-Request-ID"]
    assert len(made) == 32 and made != "lb-1234.abc"
    odd = client.get("/login", headers={"X-Request-ID": "<script>" + "x" * 200})
    assert len(odd.headers["X-Request-ID"]) == 32  # not echoed: made anew


def test_json_lines_carry_request_id_route_status_and_duration(json_app):
    app, stream = json_app
    client = app.test_client()
    response = client.get("/merchant/accounts/7?x=1", headers={"X-Request-ID": "req-42"})
    assert response.headers["X-Request-ID"] == "req-42"
    entry = [e for e in lines(stream) if e["request_id"] == "req-42"][-1]
    assert entry["logger"] == "grantdesk.request" and entry["level"] == "INFO"
    assert entry["route"] == "/merchant/accounts/<int:account_id>"
    assert entry["status"] == response.status_code and entry["duration"] >= 0
    assert entry["message"].startswith("GET /merchant/accounts/7")
    assert set(entry) >= {"time", "level", "logger", "message", "request_id", "user_id"}
    assert entry["user_id"] is None  # anonymous


def test_json_lines_mask_secrets(json_app):
    app, stream = json_app
    secret = app.config["WECHAT_COMPONENT_APPSECRET"]
    logging.getLogger("app.wechat.client").warning(
        "call https://api/cgi-bin/x?component_access_token=TOKENVALUE123 failed; secret %s", secret
    )
    text = stream.getvalue()
    assert "TOKENVALUE123" not in text and secret not in text
    assert "component_access_token=***" in lines(stream)[-1]["message"]


def test_signed_in_requests_log_the_user_id(json_app):
    from tests import factories
    from tests.conftest import csrf_token

    app, stream = json_app
    with app.app_context():
        user = factories.make_staff()
        user_id, email = user.id, user.email
        db.session.commit()
    client = app.test_client()
    client.post(
        "/login",
        data={"email": email, "password": factories.PASSWORD, "csrf_token": csrf_token(client)},
    )
    client.get("/staff/health", headers={"X-Request-ID": "signed-in"})
    entry = [e for e in lines(stream) if e["request_id"] == "signed-in"][-1]
    assert entry["user_id"] == user_id and entry["status"] == 200
    assert logs.mask("password=hunter2&x=1") == "password=***&x=1"
