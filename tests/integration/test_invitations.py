from datetime import timedelta

from sqlalchemy import select

from app.extensions import db
from app.models import Invitation, Role, User
from tests import factories
from tests.conftest import csrf_token


def _accept(client, token, password="a good long password", confirm=None):
    path = f"/invitations/{token}"
    return client.post(
        path,
        data={
            "csrf_token": csrf_token(client, "/login"),
            "name": "王小明",
            "password": password,
            "confirm": confirm or password,
        },
    )


def test_staff_invites_and_the_admin_sets_a_password(client, auth, staff):
    merchant = factories.make_merchant()
    auth.login(staff.email)
    response = client.post(
        f"/staff/merchants/{merchant.id}/invitations",
        data={
            "csrf_token": csrf_token(client, f"/staff/merchants/{merchant.id}"),
            "email": "Boss@Example.com",
        },
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    link = html.split("/invitations/")[1].split('"')[0]
    invitation = db.session.scalar(select(Invitation))
    assert invitation.token_hash != link  # only the hash is stored
    auth.logout()

    assert _accept(client, link).status_code == 303
    user = db.session.scalar(select(User).where(User.email == "boss@example.com"))
    assert user.role is Role.MERCHANT_ADMIN and user.merchant_id == merchant.id
    assert client.get("/", follow_redirects=True).request.path == "/merchant/"


def test_invitation_is_single_use(client):
    token = factories.make_invitation()
    assert _accept(client, token).status_code == 303
    client.post("/logout", data={"csrf_token": csrf_token(client, "/settings")})
    response = client.get(f"/invitations/{token}")
    assert response.status_code == 410
    assert "already used" in response.get_data(as_text=True)
    assert db.session.query(User).count() == 1


def test_expired_invitation_is_refused(client):
    token = factories.make_invitation(expires_in=timedelta(seconds=-1))
    response = _accept(client, token)
    assert response.status_code == 410
    assert "expired" in response.get_data(as_text=True)
    assert db.session.query(User).count() == 0


def test_wrong_token_is_refused(client):
    factories.make_invitation()
    response = client.get("/invitations/not-the-token")
    assert response.status_code == 410
    assert "not valid" in response.get_data(as_text=True)


def test_mismatched_passwords_are_a_form_error(client):
    token = factories.make_invitation()
    response = _accept(client, token, confirm="something else entirely")
    assert response.status_code == 422
    assert db.session.query(User).count() == 0


def test_cli_prints_an_invitation_link(runner):
    merchant = factories.make_merchant()
    result = runner.invoke(args=["invite", str(merchant.id), "cli@example.com"])
    assert result.exit_code == 0
    assert "/invitations/" in result.output


def test_cli_creates_the_first_staff_user(runner):
    result = runner.invoke(
        args=["create-staff", "--email", "first@example.com", "--password", "long enough password"]
    )
    assert result.exit_code == 0, result.output
    user = db.session.scalar(select(User))
    assert user.role is Role.PROVIDER_STAFF
    result = runner.invoke(
        args=["create-staff", "--email", "first@example.com", "--password", "long enough password"]
    )
    assert result.exit_code != 0 and "already has an account" in result.output


def test_staff_creates_a_merchant(client, auth, staff):
    auth.login(staff.email)
    response = client.post(
        "/staff/merchants",
        data={"csrf_token": csrf_token(client, "/staff/merchants"), "name": "深圳湾咖啡"},
    )
    assert response.status_code == 303
    assert "深圳湾咖啡" in client.get(response.headers["Location"]).get_data(as_text=True)


def test_staff_disables_a_user_who_is_then_signed_out(app, client, auth, staff):
    admin = factories.make_merchant_admin()
    other = app.test_client()
    from tests.conftest import AuthActions

    AuthActions(other).login(admin.email)
    assert other.get("/merchant/").status_code == 200
    auth.login(staff.email)
    response = client.post(
        f"/staff/users/{admin.id}/disable",
        data={"csrf_token": csrf_token(client, f"/staff/merchants/{admin.merchant_id}")},
    )
    assert response.status_code == 303
    assert other.get("/merchant/").status_code == 302
