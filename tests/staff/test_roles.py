"""Staff roles: what each role sees, managing staff users, the last administrator, migration."""

import os
import re

import pytest
from sqlalchemy import create_engine, text

from app import create_app
from app.extensions import db
from app.models import AuditEntry, Role, StaffRole, User, UserSession
from app.services.access import roles
from tests import factories
from tests.conftest import AuthActions, csrf_token
from tests.staff.conftest import make_account, make_attention, make_event

PASSWORD_FIELD = re.compile(r'readonly value="([^"]+)" aria-label="First password"')


def signed_in(app, user):
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    assert AuthActions(client).login(user.email).status_code == 303
    return client


def test_staff_without_a_role_are_administrators(app):
    assert factories.make_staff().staff_role is StaffRole.ADMIN
    assert factories.make_merchant_admin().staff_role is None


def test_viewer_sees_no_action_buttons_and_operator_does(app):
    account = make_account()
    make_attention(account)
    make_event(account.appid, outcome="failed")
    viewer = factories.make_staff(staff_role=StaffRole.VIEWER)
    operator = factories.make_staff(staff_role=StaffRole.OPERATOR)
    url = f"/staff/accounts/{account.id}"
    seen = signed_in(app, viewer).get(url).get_data(as_text=True)
    for hidden in ("/refresh_token", "/resync", "/staff/accounts/attention/", "/replay"):
        assert hidden not in seen
    overview = signed_in(app, viewer).get("/staff/").get_data(as_text=True)
    assert "/staff/accounts/attention/" not in overview
    acting = signed_in(app, operator).get(url).get_data(as_text=True)
    for shown in ("/refresh_token", "/resync", "/staff/accounts/attention/", "/replay"):
        assert shown in acting
    assert signed_in(app, operator).post(f"{url}/resync").status_code == 400  # CSRF, not 403


def test_only_administrators_see_user_key_and_merchant_management(app):
    merchant = factories.make_merchant()
    factories.make_merchant_admin(merchant)
    operator = signed_in(app, factories.make_staff(staff_role=StaffRole.OPERATOR))
    admin = signed_in(app, factories.make_staff(staff_role=StaffRole.ADMIN))
    for client, visible in ((operator, False), (admin, True)):
        nav = client.get("/staff/").get_data(as_text=True)
        assert 'href="/staff/integrations"' in nav  # API keys and relay routes live there
        assert ('href="/staff/api-keys"' in client.get("/staff/integrations").text) is visible
        assert ('href="/staff/users/"' in nav) is visible
        merchants = client.get("/staff/merchants").text
        assert ('method="post" action="/staff/merchants"' in merchants) is visible
        page = client.get(f"/staff/merchants/{merchant.id}").get_data(as_text=True)
        assert (f"/staff/merchants/{merchant.id}/invitations" in page) is visible
        assert ("/disable" in page) is visible


def test_admin_adds_a_staff_user_with_a_role_who_can_sign_in(app):
    admin = signed_in(app, factories.make_staff())
    token = csrf_token(admin, "/staff/users/")
    answer = admin.post(
        "/staff/users/",
        data={
            "email": "New.Viewer@example.com",
            "name": "Vi",
            "role": "viewer",
            "csrf_token": token,
        },
    )
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    password = PASSWORD_FIELD.search(answer.get_data(as_text=True)).group(1)
    user = db.session.scalar(db.select(User).where(User.email == "new.viewer@example.com"))
    assert user.role is Role.PROVIDER_STAFF and user.staff_role is StaffRole.VIEWER
    newcomer = app.test_client()
    assert AuthActions(newcomer).login(user.email, password).status_code == 303
    assert newcomer.get("/staff/accounts/").status_code == 200
    assert newcomer.get("/staff/users/").status_code == 403

    again = admin.post(
        "/staff/users/", data={"email": user.email, "role": "admin", "csrf_token": token}
    )
    assert again.status_code == 422
    bad_role = admin.post(
        "/staff/users/", data={"email": "x@example.com", "role": "owner", "csrf_token": token}
    )
    assert bad_role.status_code == 422
    assert db.session.scalar(db.select(User).where(User.email == "x@example.com")) is None


def test_admin_changes_roles_but_the_last_admin_stays_one(app):
    first = factories.make_staff()
    viewer = factories.make_staff(staff_role=StaffRole.VIEWER)
    client = signed_in(app, first)
    token = csrf_token(client, "/staff/users/")

    def change(user, role):
        return client.post(f"/staff/users/{user.id}/role", data={"role": role, "csrf_token": token})

    assert change(viewer, "admin").status_code == 303
    assert viewer.staff_role is StaffRole.ADMIN
    assert change(viewer, "operator").status_code == 303
    # `first` is now the only administrator: demoting them is refused and changes nothing.
    refused = change(first, "viewer")
    assert refused.status_code == 409
    assert "The last administrator cannot be given another role." in refused.text
    assert first.staff_role is StaffRole.ADMIN
    actions = db.session.scalars(db.select(AuditEntry.action)).all()
    assert actions.count("user.staff_role_changed") == 2
    # A merchant user has no staff role to change.
    merchant_admin = factories.make_merchant_admin()
    assert change(merchant_admin, "admin").status_code == 303
    assert merchant_admin.staff_role is None
    with pytest.raises(roles.NotStaff):
        roles.change_role(merchant_admin, "admin", actor=first)


def test_a_disabled_admin_does_not_count_as_the_remaining_admin(app):
    active = factories.make_staff()
    factories.make_staff(disabled_at=factories.utcnow())
    with pytest.raises(roles.LastAdmin):
        roles.change_role(active, StaffRole.OPERATOR, actor=active)
    assert roles.count_admins() == 1


def test_migration_makes_existing_staff_administrators(tmp_path):
    from flask_migrate import upgrade

    urls = [f"sqlite:///{tmp_path / 'roles.sqlite'}"]
    if os.environ.get("TEST_DATABASE_URL"):
        urls.append(os.environ["TEST_DATABASE_URL"])
    for url in urls:
        app = create_app({"ENV_NAME": "test", "SQLALCHEMY_DATABASE_URI": url})
        with app.app_context():
            db.drop_all()
            db.session.execute(text("DROP TABLE IF EXISTS alembic_version"))
            db.session.commit()
            upgrade(revision="0005_console_indexes")
            db.session.execute(
                text(
                    "INSERT INTO users (email, name, password_hash, role, timezone,"
                    " session_nonce, created_at) VALUES ('old@example.com', '', 'x',"
                    " 'provider_staff', 'UTC', 'n', CURRENT_TIMESTAMP)"
                )
            )
            db.session.commit()
            upgrade()
            role = db.session.execute(text("SELECT staff_role FROM users")).scalar_one()
            assert role == "admin", url
            db.session.remove()
            db.drop_all()
            db.session.execute(text("DROP TABLE IF EXISTS alembic_version"))
            db.session.commit()
            db.engine.dispose()
        create_engine(url).dispose()


def test_admin_resets_a_lost_authenticator_and_signs_the_member_out(app):
    from app.services.access import mfa

    admin = signed_in(app, factories.make_staff())
    member = factories.make_staff(staff_role=StaffRole.OPERATOR)
    member_client = signed_in(app, member)
    mfa.confirm_enrollment(member, _current_code(mfa.start_enrollment(member).secret))
    assert mfa.is_enrolled(member)
    page = admin.get(f"/staff/users/{member.id}/two-factor/reset")
    assert page.status_code == 200 and member.email in page.text
    token = csrf_token(admin, "/staff/users/")
    answer = admin.post(f"/staff/users/{member.id}/two-factor/reset", data={"csrf_token": token})
    assert answer.status_code == 303
    assert not mfa.is_enrolled(member)
    assert mfa.remaining_recovery_codes(member) == 0
    assert member_client.get("/staff/").status_code == 302  # signed out
    records = db.session.scalars(db.select(UserSession).where(UserSession.user_id == member.id))
    assert all(record.revoked_at is not None for record in records)
    own = admin.post(f"/staff/users/{admin_id(app)}/two-factor/reset", data={"csrf_token": token})
    assert own.status_code == 400


def _current_code(secret):
    import pyotp

    from app.services import clock

    return pyotp.TOTP(secret).at(clock.now())


def admin_id(app):
    return db.session.scalar(
        db.select(User.id).where(User.staff_role == StaffRole.ADMIN).order_by(User.id)
    )
