"""Server-side sign-in sessions: sign-out ends them, replayed cookies are anonymous."""

import hashlib

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import UserSession
from app.services import clock
from tests import factories
from tests.conftest import AuthActions, csrf_token


@pytest.fixture(autouse=True)
def real_time():
    yield
    clock.reset()


def _cookie(client, name):
    cookie = client.get_cookie(name)
    return cookie.value if cookie else None


def _fresh_client(app, user_agent="Mozilla/5.0 (Windows NT 10.0) Firefox/128.0", **cookies):
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    if user_agent:  # None: the test client's own, as the `client` fixture sends
        client.environ_base["HTTP_USER_AGENT"] = user_agent
    for name, value in cookies.items():
        client.set_cookie(name, value)
    return client


def _records():
    return list(db.session.scalars(select(UserSession).order_by(UserSession.id)))


def test_sign_in_records_a_session_and_the_cookie_carries_only_its_id(app, staff):
    client = _fresh_client(app, user_agent="Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Safari/604.1")
    AuthActions(client).login(staff.email)
    [record] = _records()
    assert (record.user_id, record.ip_address, record.revoked_at) == (staff.id, "127.0.0.1", None)
    assert "iPhone" in record.user_agent and record.remember_hash is None
    with app.test_request_context():
        stored = app.session_interface.get_signing_serializer(app).loads(_cookie(client, "session"))
    assert not stored["_user_id"].startswith((f"{staff.id}:", "pending:"))  # no user id in it
    assert hashlib.sha256(stored["_user_id"].encode()).hexdigest() == record.token_hash
    assert client.get("/staff/").status_code == 200


def test_replayed_session_cookie_after_sign_out_is_anonymous(app, client, auth, staff):
    auth.login(staff.email, remember="y")
    saved_session, saved_remember = _cookie(client, "session"), _cookie(client, "remember_token")
    assert saved_session and saved_remember
    assert client.get("/staff/").status_code == 200
    assert auth.logout().status_code == 303
    [record] = _records()
    assert record.revoked_at is not None

    # Same browser (address and user agent), so only the server-side record can refuse it.
    replay = _fresh_client(app, user_agent=None, session=saved_session)
    response = replay.get("/staff/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")

    # The remember-me token alone, from another browser, opens nothing either.
    replay = _fresh_client(app, user_agent="curl/8.0", remember_token=saved_remember)
    response = replay.get("/staff/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert replay.get("/settings").status_code == 302


def test_remember_me_resumes_once_and_rotates_the_token(app, client, auth, staff):
    auth.login(staff.email, remember="y")
    first_token = _cookie(client, "remember_token")
    [record] = _records()
    first_hash = record.remember_hash

    # Browser restarted: the session cookie is gone, the remember-me cookie stays.
    restarted = _fresh_client(app, remember_token=first_token)
    assert restarted.get("/staff/").status_code == 200
    second_token = _cookie(restarted, "remember_token")
    assert second_token and second_token != first_token
    db.session.refresh(record)
    assert record.remember_hash != first_hash and record.revoked_at is None
    assert first_token not in (record.remember_hash, record.token_hash)
    assert restarted.get("/settings").status_code == 200  # now on the new session cookie

    # The used token is spent: a thief replaying it gets nothing.
    thief = _fresh_client(app, user_agent="curl/8.0", remember_token=first_token)
    assert thief.get("/staff/").status_code == 302
    assert len(_records()) == 1


def test_password_change_revokes_every_session_and_remember_token(app, client, auth, staff):
    other = _fresh_client(app)
    AuthActions(other).login(staff.email, remember="y")
    other_remember = _cookie(other, "remember_token")
    auth.login(staff.email)
    response = client.post(
        "/settings/password",
        data={
            "csrf_token": csrf_token(client, "/settings"),
            "pw-current_password": factories.PASSWORD,
            "pw-password": "a brand new password",
            "pw-confirm": "a brand new password",
        },
    )
    assert response.status_code == 303
    assert client.get("/settings").status_code == 200  # this browser got a new session
    assert other.get("/settings").status_code == 302
    assert _fresh_client(app, remember_token=other_remember).get("/staff/").status_code == 302
    live = [r for r in _records() if r.revoked_at is None]
    assert len(live) == 1 and len(_records()) == 3


def test_settings_lists_sessions_and_revokes_another_device(app, client, auth, staff):
    phone = _fresh_client(app, user_agent="Mozilla/5.0 (Linux; Android 14) Chrome/126.0 Mobile")
    AuthActions(phone).login(staff.email)
    auth.login(staff.email)
    page = client.get("/settings").get_data(as_text=True)
    mine, other = _records()[1], _records()[0]
    assert f'id="session-{mine.id}"' in page and f'id="session-{other.id}"' in page
    assert "This device" in page and "Chrome · Android" in page
    assert page.count("This device") == 1

    response = client.post(
        f"/settings/sessions/{other.id}/revoke",
        data={"csrf_token": csrf_token(client, "/settings")},
    )
    assert response.status_code == 303
    assert phone.get("/settings").status_code == 302
    assert client.get("/settings").status_code == 200
    assert f'id="session-{other.id}"' not in client.get("/settings").get_data(as_text=True)


def test_revoking_needs_csrf_and_only_reaches_your_own_sessions(app, client, auth, staff):
    someone = factories.make_staff()
    AuthActions(_fresh_client(app)).login(someone.email)
    auth.login(staff.email)
    [theirs, _mine] = _records()
    assert client.post(f"/settings/sessions/{theirs.id}/revoke").status_code == 400
    response = client.post(
        f"/settings/sessions/{theirs.id}/revoke",
        data={"csrf_token": csrf_token(client, "/settings")},
    )
    assert response.status_code == 404
    db.session.refresh(theirs)
    assert theirs.revoked_at is None


def test_revoking_this_device_signs_it_out(client, auth, staff):
    auth.login(staff.email)
    [mine] = _records()
    response = client.post(
        f"/settings/sessions/{mine.id}/revoke", data={"csrf_token": csrf_token(client, "/settings")}
    )
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert client.get("/settings").status_code == 302


def test_sign_out_everywhere(app, client, auth, staff):
    others = [_fresh_client(app) for _ in range(2)]
    for other in others:
        AuthActions(other).login(staff.email, remember="y")
    remembered = [_cookie(other, "remember_token") for other in others]
    auth.login(staff.email)
    response = client.post(
        "/settings/sessions/revoke-all", data={"csrf_token": csrf_token(client, "/settings")}
    )
    assert response.status_code == 303
    assert all(r.revoked_at is not None for r in _records())
    for other, token in zip(others, remembered, strict=True):
        assert other.get("/staff/").status_code == 302
        assert _fresh_client(app, remember_token=token).get("/staff/").status_code == 302
    assert client.get("/staff/").status_code == 302


def test_disabling_a_user_revokes_their_sessions(client, auth, merchant_admin):
    from app.services import accounts

    auth.login(merchant_admin.email)
    accounts.set_user_disabled(merchant_admin, True)
    assert all(r.revoked_at is not None for r in _records())
    assert client.get("/merchant/").status_code == 302


def test_last_seen_is_written_at_most_once_a_minute(client, auth, staff):
    auth.login(staff.email)
    [record] = _records()
    signed_in_at = record.last_seen_at
    clock.advance(30)
    client.get("/settings")
    db.session.refresh(record)
    assert record.last_seen_at == signed_in_at
    clock.advance(31)
    client.get("/settings")
    db.session.refresh(record)
    assert record.last_seen_at > signed_in_at
    seen = record.last_seen_at
    client.get("/settings")
    db.session.refresh(record)
    assert record.last_seen_at == seen


def test_an_idle_session_expires_but_use_keeps_it_alive(app, client, auth, staff):
    app.config["GRANTDESK_SESSION_IDLE_HOURS"] = 12
    auth.login(staff.email)
    for _ in range(3):  # used every 11 hours: still signed in after 33
        clock.advance(11 * 3600)
        assert client.get("/settings").status_code == 200
    clock.advance(13 * 3600)
    assert client.get("/settings").status_code == 302


def test_a_remembered_device_expires_after_its_duration(app, client, auth, staff):
    auth.login(staff.email, remember="y")
    remembered = _cookie(client, "remember_token")
    clock.advance(app.config["REMEMBER_COOKIE_DURATION"].total_seconds() + 60)
    assert client.get("/settings").status_code == 302
    assert _fresh_client(app, remember_token=remembered).get("/staff/").status_code == 302
