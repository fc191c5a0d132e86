"""Forgot password: same answer for every address, a single-use expiring emailed link (hashed at
rest), the new password signs out every other session, rate limits per address and client."""

import re

from sqlalchemy import select, text

from app.extensions import db
from app.models import OutgoingMail, PasswordReset, PasswordResetRequest
from app.services import clock
from tests import factories
from tests.access.conftest import deliver, parts
from tests.conftest import AuthActions, csrf_token

NEW_PASSWORD = "a brand new long password"
LINK = re.compile(r"https://portal\.grantdesk\.example\.com/reset-password\?token=([A-Za-z0-9_-]+)")


def _ask(client, email, **environ):
    token = csrf_token(client, "/forgot-password")
    return client.post(
        "/forgot-password", data={"csrf_token": token, "email": email}, environ_base=environ
    )


def _set_password(client, token, password=NEW_PASSWORD, confirm=None):
    page = f"/reset-password?token={token}"
    data = {"token": token, "password": password, "confirm": confirm or password}
    return client.post("/reset-password", data={**data, "csrf_token": csrf_token(client, page)})


def _link_token(smtp_server) -> str:
    text_part, html_part = parts(smtp_server.only())
    token = LINK.search(text_part).group(1)
    assert f"/reset-password?token={token}" in html_part
    return token


def test_sign_in_page_links_to_the_form(client):
    html = client.get("/login").get_data(as_text=True)
    assert 'id="forgot-password" href="/forgot-password"' in html
    assert client.get("/forgot-password").status_code == 200


def test_the_answer_is_the_same_whether_or_not_the_address_exists(client, smtp_server):
    user = factories.make_merchant_admin()
    known = _ask(client, user.email.upper())
    unknown = _ask(client, "nobody-here@example.com")
    assert known.status_code == unknown.status_code == 303
    assert known.location == unknown.location == "/forgot-password?sent=1"
    page = client.get(known.location).get_data(as_text=True)
    assert "If an account uses this address" in page
    # The page did the same work for both: one recorded request each, nothing else yet.
    requests = db.session.scalars(select(PasswordResetRequest.email)).all()
    assert sorted(requests) == ["nobody-here@example.com", user.email]
    assert db.session.scalar(select(db.func.count(OutgoingMail.id))) == 0
    assert db.session.scalar(select(db.func.count(PasswordReset.id))) == 0

    deliver()  # the worker: a link for the account, nothing for the unknown address
    assert smtp_server.only()["To"] == user.email
    assert db.session.scalar(select(db.func.count(OutgoingMail.id))) == 1
    assert db.session.scalar(select(db.func.count(PasswordResetRequest.id))) == 0


def test_the_emailed_link_sets_a_new_password_once(app, client, smtp_server):
    user = factories.make_merchant_admin()
    other_device = app.test_client()
    other_device.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    AuthActions(other_device).login(user.email)
    assert other_device.get("/merchant/").status_code == 200

    # A forged Host header does not change where the link points.
    _ask(client, user.email, HTTP_HOST="evil.example")
    deliver()
    message = smtp_server.only()
    assert "重置密码" in message["Subject"] and "Reset your password" in message["Subject"]
    text_part, _html = parts(message)
    assert text_part.index("您好") < text_part.index("Hello")  # Chinese first, then English
    token = _link_token(smtp_server)
    stored = db.session.execute(text("SELECT token_hash FROM password_resets")).scalar_one()
    assert token not in stored and len(stored) == 64

    assert client.get(f"/reset-password?token={token}").status_code == 200
    response = _set_password(client, token)
    assert response.status_code == 303 and response.location == "/login"

    assert AuthActions(client).login(user.email, NEW_PASSWORD).status_code == 303
    fresh = app.test_client()
    assert AuthActions(fresh).login(user.email).status_code == 422  # the old password is gone
    assert other_device.get("/merchant/").status_code == 302  # signed out everywhere else
    assert _set_password(app.test_client(), token, "another long password").status_code == 410


def test_a_link_expires(client, smtp_server, moved_clock):
    user = factories.make_staff()
    _ask(client, user.email)
    deliver()
    token = _link_token(smtp_server)
    clock.advance(3601)
    assert client.get(f"/reset-password?token={token}").status_code == 410
    assert _set_password(client, token).status_code == 410


def test_a_bad_new_password_changes_nothing(client, smtp_server):
    user = factories.make_merchant_admin()
    _ask(client, user.email)
    deliver()
    token = _link_token(smtp_server)
    assert _set_password(client, token, "short").status_code == 422
    assert _set_password(client, token, NEW_PASSWORD, "different long password").status_code == 422
    assert AuthActions(client).login(user.email).status_code == 303  # old password still works
    reset = db.session.scalar(select(PasswordReset))
    assert reset.used_at is None


def test_unknown_or_forged_links_are_refused(client):
    assert client.get("/reset-password?token=not-a-real-token").status_code == 410


def test_disabled_users_get_no_link(client, smtp_server):
    user = factories.make_merchant_admin(disabled_at=clock.now())
    assert _ask(client, user.email).status_code == 303
    deliver()
    assert db.session.scalar(select(PasswordReset)) is None and smtp_server.messages == []


def test_a_new_link_retires_older_ones_when_used(client, smtp_server):
    user = factories.make_merchant_admin()
    _ask(client, user.email)
    _ask(client, user.email)
    deliver()
    first, second = (LINK.search(parts(m)[0]).group(1) for m in smtp_server.messages)
    assert _set_password(client, second).status_code == 303
    assert client.get(f"/reset-password?token={first}").status_code == 410


def test_rate_limited_per_address_whatever_the_client(client, smtp_server):
    user = factories.make_merchant_admin()
    for n in range(3):
        assert _ask(client, user.email, REMOTE_ADDR=f"10.0.0.{n}").status_code == 303
    assert _ask(client, user.email, REMOTE_ADDR="10.0.0.99").status_code == 429
    assert db.session.scalar(select(db.func.count(PasswordResetRequest.id))) == 3
    # Another address is not affected.
    assert _ask(client, "someone-else@example.com", REMOTE_ADDR="10.0.0.99").status_code == 303


def test_rate_limited_per_client(client):
    for n in range(20):
        assert _ask(client, f"probe{n}@example.com", REMOTE_ADDR="10.1.1.1").status_code == 303
    assert _ask(client, "probe-last@example.com", REMOTE_ADDR="10.1.1.1").status_code == 429
    assert _ask(client, "probe-last@example.com", REMOTE_ADDR="10.1.1.2").status_code == 303
