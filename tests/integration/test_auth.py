from datetime import timedelta

from flask_login import current_user

from app.extensions import db
from app.models import AuditEntry
from tests import factories
from tests.conftest import csrf_token


def test_login_page_renders(client):
    response = client.get("/login")
    assert response.status_code == 200
    assert 'name="csrf_token"' in response.get_data(as_text=True)


def test_staff_signs_in_and_lands_on_console(client, auth, staff):
    response = auth.login(staff.email)
    assert response.status_code == 303
    assert client.get("/", follow_redirects=True).request.path == "/staff/"
    assert db.session.query(AuditEntry).filter_by(action="user.signed_in").count() == 1


def test_merchant_admin_lands_on_accounts(client, auth, merchant_admin):
    auth.login(merchant_admin.email)
    assert client.get("/", follow_redirects=True).request.path == "/merchant/"


def test_wrong_password_and_unknown_email_get_the_same_message(client, auth, staff):
    wrong = auth.login(staff.email, "not the password").get_data(as_text=True)
    unknown = auth.login("nobody@example.com").get_data(as_text=True)
    message = "Email or password is incorrect."
    assert message in wrong and message in unknown


def test_failed_login_is_422_and_signs_nobody_in(client, auth, staff):
    response = auth.login(staff.email, "wrong password!")
    assert response.status_code == 422
    assert client.get("/staff/").status_code == 302


def test_disabled_user_cannot_sign_in(client, auth, staff):
    from app.models import utcnow

    staff.disabled_at = utcnow()
    db.session.commit()
    assert auth.login(staff.email).status_code == 422


def test_next_parameter_is_followed_only_within_the_site(client, auth, staff):
    token = csrf_token(client)
    data = {"email": staff.email, "password": factories.PASSWORD, "csrf_token": token}
    response = client.post("/login", data={**data, "next": "https://evil.example/"})
    assert response.headers["Location"] == "/"
    client.post("/logout", data={"csrf_token": csrf_token(client, "/settings")})
    token = csrf_token(client)
    response = client.post("/login", data={**data, "csrf_token": token, "next": "/settings"})
    assert response.headers["Location"] == "/settings"


def test_logout_is_post_only(client, auth, staff):
    auth.login(staff.email)
    assert client.get("/logout").status_code == 405
    response = auth.logout()
    assert response.status_code == 303
    assert client.get("/staff/").status_code == 302


def test_login_requires_csrf_token(client, staff):
    response = client.post("/login", data={"email": staff.email, "password": factories.PASSWORD})
    assert response.status_code == 400
    assert "form expired" in response.get_data(as_text=True)
    assert client.get("/staff/").status_code == 302


def test_remember_me_sets_a_persistent_cookie(client, auth, staff):
    response = auth.login(staff.email, remember="y")
    assert any("remember_token=" in c for c in response.headers.getlist("Set-Cookie"))


def test_login_attempts_are_rate_limited(client, auth, staff):
    responses = [auth.login(staff.email, "wrong password!") for _ in range(6)]
    assert [r.status_code for r in responses] == [422] * 5 + [429]
    assert "Too many attempts" in responses[5].get_data(as_text=True)
    assert auth.login(staff.email).status_code == 429  # even the right password waits


def test_password_change_signs_out_other_sessions(app, client, auth, staff):
    other = app.test_client()
    from tests.conftest import AuthActions

    AuthActions(other).login(staff.email)
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
    assert client.get("/settings").status_code == 200
    assert other.get("/settings").status_code == 302
    assert auth.logout().status_code == 303
    assert auth.login(staff.email, "a brand new password").status_code == 303


def test_password_change_with_wrong_current_password(client, auth, staff):
    auth.login(staff.email)
    response = client.post(
        "/settings/password",
        data={
            "csrf_token": csrf_token(client, "/settings"),
            "pw-current_password": "not it at all",
            "pw-password": "a brand new password",
            "pw-confirm": "a brand new password",
        },
    )
    assert response.status_code == 422
    assert "The current password is not correct." in response.get_data(as_text=True)


def test_staff_area_is_staff_only(client, auth, merchant_admin):
    auth.login(merchant_admin.email)
    assert client.get("/staff/").status_code == 403
    assert client.get("/staff/merchants").status_code == 403


def test_merchant_area_is_for_merchant_admins(client, auth, staff):
    auth.login(staff.email)
    assert client.get("/merchant/").status_code == 403


def test_session_loader_rejects_a_forged_id(app, staff):
    from app.security import load_user
    from app.services.access import sessions

    with app.test_request_context():
        policy = sessions.SessionPolicy(idle=timedelta(hours=1), remember=timedelta(days=1))
        started = sessions.start(
            staff, remember=False, policy=policy, ip_address="127.0.0.1", user_agent="test"
        )
        assert load_user(started.token) == staff
        assert load_user(f"{staff.id}:{staff.session_nonce}") is None  # the old id format
        assert load_user(started.record.token_hash) is None  # the stored digest is no id
        assert load_user("pending:1") is None
        assert load_user("not-a-number") is None
        assert not current_user.is_authenticated
