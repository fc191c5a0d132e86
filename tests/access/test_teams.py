"""Merchant teams: administrators invite and manage, viewers only look, the last administrator
stays, and nothing crosses merchants. Staff manage any merchant's team."""

import random
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEntry, Authorizer, Invitation, OutgoingMail, Role, User
from app.services import accounts
from app.services.access import teams
from tests import factories
from tests.access.conftest import deliver, parts
from tests.conftest import AuthActions, csrf_token
from tests.merchant.conftest import make_account, make_session

INVITE_LINK = re.compile(r"https?://[^\s\"'<]+/invitations/([A-Za-z0-9_-]+)")


def make_viewer(merchant, **overrides) -> User:
    return factories.make_user(Role.MERCHANT_VIEWER, merchant_id=merchant.id, **overrides)


def _signed_in(app, user):
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    assert AuthActions(client).login(user.email).status_code == 303
    return client


def _post(client, path, data=None, page="/merchant/team"):
    return client.post(path, data={"csrf_token": csrf_token(client, page), **(data or {})})


def _accept(app, token, password="a good long password"):
    client = app.test_client()
    path = f"/invitations/{token}"
    return client.post(path, data={"csrf_token": csrf_token(client, path), "name": "新同事",
                                   "password": password, "confirm": password})  # fmt: skip


@pytest.fixture
def team(app):
    """A merchant with an admin, a viewer, an account, a session and a pending invitation."""
    merchant = factories.make_merchant()
    admin = factories.make_merchant_admin(merchant)
    viewer = make_viewer(merchant)
    account = make_account(merchant)
    session = make_session(merchant, admin)
    invitation = teams.invite(merchant, "pending@example.com", "merchant_viewer").invitation
    return {"merchant": merchant, "admin": admin, "viewer": viewer, "account": account,
            "session": session, "invitation": invitation}  # fmt: skip


def _route_values(rule, team) -> dict:
    known = {
        "account_id": team["account"].id,
        "public_id": team["session"].public_id,
        "invitation_id": team["invitation"].id,
        "user_id": team["admin"].id,
    }
    missing = set(rule.arguments) - set(known)
    assert not missing, f"{rule.rule}: teach this test a value for {missing}"
    return {name: known[name] for name in rule.arguments}


def _snapshot():
    db.session.expire_all()
    return (
        db.session.scalar(select(func.count(AuditEntry.id))),
        sorted((u.id, u.role.value) for u in db.session.scalars(select(User))),
        sorted((i.id, i.revoked_at, i.expires_at) for i in db.session.scalars(select(Invitation))),
        db.session.scalar(select(func.count(Authorizer.id))),
    )


def test_a_viewer_cannot_post_any_merchant_action(app, team):
    viewer = _signed_in(app, team["viewer"])
    rules = [r for r in app.url_map.iter_rules()
             if r.endpoint.startswith("merchant.") and "POST" in r.methods]  # fmt: skip
    assert len(rules) >= 9  # the wizard, account actions and the team's actions
    before = _snapshot()
    token = csrf_token(viewer, "/merchant/team")
    for rule in rules:
        url = app.url_map.bind("localhost").build(rule.endpoint, _route_values(rule, team))
        response = viewer.post(url, data={"csrf_token": token, "role": "merchant_admin",
                                          "email": "x@example.com", "type": "official_account",
                                          "sets": "1"})  # fmt: skip
        assert response.status_code == 403, (rule.rule, response.status_code)
    assert _snapshot() == before


def test_a_viewer_sees_everything_but_no_action(app, team):
    viewer = _signed_in(app, team["viewer"])
    accounts_page = viewer.get("/merchant/").get_data(as_text=True)
    assert team["account"].nick_name in accounts_page
    assert 'id="connect-account"' not in accounts_page and "/update" not in accounts_page
    account_page = viewer.get(f"/merchant/accounts/{team['account'].id}")
    assert account_page.status_code == 200
    assert "/delete" not in account_page.get_data(as_text=True)
    for path in ("/merchant/connect", f"/merchant/accounts/{team['account'].id}/update",
                 f"/merchant/accounts/{team['account'].id}/delete",
                 f"/merchant/team/members/{team['admin'].id}/remove"):  # fmt: skip
        assert viewer.get(path).status_code == 403, path
    team_page = viewer.get("/merchant/team").get_data(as_text=True)
    assert team["admin"].email in team_page and "pending@example.com" in team_page
    assert "/invitations/" not in team_page and 'id="team-invite"' not in team_page
    assert "Change role" not in team_page


def test_an_admin_sees_the_actions(app, team):
    admin = _signed_in(app, team["admin"])
    page = admin.get("/merchant/team").get_data(as_text=True)
    assert 'id="team-invite"' in page and "Change role" in page
    link = INVITE_LINK.search(page).group(1)  # copy link of the pending invitation
    assert accounts.token_hash(link) == team["invitation"].token_hash
    assert 'id="connect-account"' in admin.get("/merchant/").get_data(as_text=True)


def test_an_admin_invites_a_viewer_by_email(app, team, smtp_server):
    admin = _signed_in(app, team["admin"])
    response = _post(admin, "/merchant/team/invitations",
                     {"email": "Colleague@Example.com", "role": "merchant_viewer"})  # fmt: skip
    assert response.status_code == 303  # and a reload of the next page invites nobody twice
    page = admin.get(response.location).get_data(as_text=True)
    assert "We are emailing the invitation to colleague@example.com" in page
    shown = INVITE_LINK.search(page).group(1)

    deliver()
    message = smtp_server.only()
    assert message["To"] == "colleague@example.com"
    assert team["merchant"].name in message["Subject"]
    text_part, html_part = parts(message)
    assert "只读成员" in text_part and "viewer" in text_part
    assert text_part.index("您好") < text_part.index("Hello")
    emailed = INVITE_LINK.search(text_part).group(1)
    assert emailed == shown and f"/invitations/{emailed}" in html_part
    assert text_part.count("https://portal.grantdesk.example.com/invitations/") == 2

    assert _accept(app, emailed).status_code == 303
    user = db.session.scalar(select(User).where(User.email == "colleague@example.com"))
    assert user.role is Role.MERCHANT_VIEWER and user.merchant_id == team["merchant"].id


def test_without_mail_the_link_is_shown_to_the_creator(app, team):
    admin = _signed_in(app, team["admin"])
    response = _post(admin, "/merchant/team/invitations",
                     {"email": "a2@example.com", "role": "merchant_admin"})  # fmt: skip
    page = admin.get(response.location).get_data(as_text=True)
    assert "Send this link to a2@example.com" in page
    token = INVITE_LINK.search(page).group(1)
    # A viewer given the same address sees who was invited, never the link.
    viewer_page = _signed_in(app, team["viewer"]).get(response.location).get_data(as_text=True)
    assert "a2@example.com" in viewer_page and token not in viewer_page
    assert _accept(app, token).status_code == 303
    user = db.session.scalar(select(User).where(User.email == "a2@example.com"))
    assert user.role is Role.MERCHANT_ADMIN


def test_invalid_invitation_input_changes_nothing(app, team):
    admin = _signed_in(app, team["admin"])
    before = _snapshot()
    for data in ({"email": "not-an-email", "role": "merchant_admin"},
                 {"email": "ok@example.com", "role": "provider_staff"},
                 {"email": team["viewer"].email, "role": "merchant_admin"}):  # fmt: skip
        assert _post(admin, "/merchant/team/invitations", data).status_code == 422
    assert _snapshot() == before


def test_resend_keeps_the_link_and_revoke_kills_it(app, team, smtp_server):
    admin = _signed_in(app, team["admin"])
    invitation_id = team["invitation"].id
    link = teams.copy_link(team["merchant"].id, invitation_id)
    team["invitation"].expires_at = factories.utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert app.test_client().get(link.split("example.com")[1]).status_code == 410
    assert _post(admin, f"/merchant/team/invitations/{invitation_id}/resend").status_code == 303
    deliver()
    assert link in parts(smtp_server.only())[0]
    assert app.test_client().get(link.split("example.com")[1]).status_code == 200

    response = _post(admin, f"/merchant/team/invitations/{invitation_id}/revoke")
    assert response.status_code == 303
    assert app.test_client().get(link.split("example.com")[1]).status_code == 410
    assert "pending@example.com" not in admin.get("/merchant/team").get_data(as_text=True)


def test_change_role_and_remove(app, team):
    admin = _signed_in(app, team["admin"])
    viewer_id, viewer_email = team["viewer"].id, team["viewer"].email
    path = f"/merchant/team/members/{viewer_id}/role"
    assert _post(admin, path, {"role": "merchant_admin"}).status_code == 303
    assert db.session.get(User, viewer_id).role is Role.MERCHANT_ADMIN
    assert _post(admin, path, {"role": "merchant_viewer"}).status_code == 303
    assert db.session.get(User, viewer_id).role is Role.MERCHANT_VIEWER
    assert _post(admin, path, {"role": "provider_staff"}).status_code == 400

    viewer_client = _signed_in(app, team["viewer"])
    page = f"/merchant/team/members/{viewer_id}/remove"
    assert admin.get(page).status_code == 200
    assert _post(admin, page, page=page).status_code == 303
    assert db.session.get(User, viewer_id) is None
    assert viewer_client.get("/merchant/").status_code == 302  # their session is gone
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "user.removed"))
    assert entry.details["email"] == viewer_email


def test_the_last_admin_can_be_neither_demoted_nor_removed(app, team):
    admin = _signed_in(app, team["admin"])
    admin_id = team["admin"].id
    response = _post(admin, f"/merchant/team/members/{admin_id}/role", {"role": "merchant_viewer"})
    assert response.status_code == 409
    assert "at least one administrator" in response.get_data(as_text=True)
    page = f"/merchant/team/members/{admin_id}/remove"
    assert _post(admin, page, page=page).status_code == 409
    assert db.session.get(User, admin_id).role is Role.MERCHANT_ADMIN

    # A disabled second admin does not count as one who can take over.
    factories.make_merchant_admin(team["merchant"], disabled_at=factories.utcnow())
    assert _post(admin, page, page=page).status_code == 409
    # An active one does.
    factories.make_merchant_admin(team["merchant"])
    assert _post(admin, page, page=page).status_code == 303
    assert db.session.get(User, admin_id) is None


def test_randomized_team_changes_never_leave_a_merchant_without_an_admin(app):
    rng = random.Random(2024)
    merchant = factories.make_merchant()
    people = [factories.make_merchant_admin(merchant).id]
    people += [make_viewer(merchant).id for _ in range(4)]
    for _step in range(60):
        user_id = rng.choice(people)
        try:
            if rng.random() < 0.2:
                teams.remove(merchant.id, user_id)
                people.remove(user_id)
                people.append(make_viewer(merchant).id)
            else:
                role = rng.choice(["merchant_admin", "merchant_viewer"])
                teams.change_role(merchant.id, user_id, role)
        except teams.LastAdmin:
            pass
        admins = db.session.scalar(select(func.count(User.id)).where(
            User.merchant_id == merchant.id, User.role == Role.MERCHANT_ADMIN))  # fmt: skip
        assert admins >= 1


def test_another_merchants_team_is_404(app, team):
    other = factories.make_merchant()
    other_admin = factories.make_merchant_admin(other)
    other_invitation = teams.invite(other, "theirs@example.com", "merchant_admin").invitation
    admin = _signed_in(app, team["admin"])
    before = _snapshot()
    for path, data in (
        (f"/merchant/team/members/{other_admin.id}/role", {"role": "merchant_viewer"}),
        (f"/merchant/team/members/{other_admin.id}/remove", {}),
        (f"/merchant/team/invitations/{other_invitation.id}/resend", {}),
        (f"/merchant/team/invitations/{other_invitation.id}/revoke", {}),
    ):
        assert _post(admin, path, data).status_code == 404, path
    assert admin.get(f"/merchant/team/members/{other_admin.id}/remove").status_code == 404
    page = admin.get("/merchant/team").get_data(as_text=True)
    assert other_admin.email not in page and "theirs@example.com" not in page
    assert _snapshot() == before


def test_staff_manage_any_merchants_team(app, team, smtp_server):
    staff = _signed_in(app, factories.make_staff())
    merchant_id = team["merchant"].id
    page_path = f"/staff/merchants/{merchant_id}"
    page = staff.get(page_path).get_data(as_text=True)
    assert team["viewer"].email in page and "pending@example.com" in page
    assert INVITE_LINK.search(page)  # copy link

    base = f"/staff/merchants/{merchant_id}/team"
    data = {"email": "boss2@example.com", "role": "merchant_viewer"}
    response = _post(staff, f"{page_path}/invitations", data, page=page_path)
    assert "We are emailing the invitation to boss2@example.com" in response.get_data(as_text=True)
    invitation_id = team["invitation"].id
    assert (
        _post(staff, f"{base}/invitations/{invitation_id}/resend", page=page_path).status_code
        == 303
    )
    deliver()
    assert sorted(m["To"] for m in smtp_server.messages) == [
        "boss2@example.com",
        "pending@example.com",
    ]
    assert (
        _post(staff, f"{base}/invitations/{invitation_id}/revoke", page=page_path).status_code
        == 303
    )
    assert db.session.get(Invitation, invitation_id).revoked_at is not None

    viewer_id = team["viewer"].id
    path = f"{base}/members/{viewer_id}/role"
    assert _post(staff, path, {"role": "merchant_admin"}, page=page_path).status_code == 303
    assert db.session.get(User, viewer_id).role is Role.MERCHANT_ADMIN
    assert staff.get(f"{base}/members/{viewer_id}/remove").status_code == 200
    remove = f"{base}/members/{viewer_id}/remove"
    assert _post(staff, remove, page=page_path).status_code == 303
    assert db.session.get(User, viewer_id) is None
    # Still only one admin left: staff cannot remove it either.
    remove = f"{base}/members/{team['admin'].id}/remove"
    assert _post(staff, remove, page=page_path).status_code == 303
    assert db.session.get(User, team["admin"].id) is not None
    # A user of another merchant through this merchant's URL: 404.
    stranger = factories.make_merchant_admin()
    assert _post(staff, f"{base}/members/{stranger.id}/remove", page=page_path).status_code == 404


def test_flask_invite_emails_the_link_and_prints_it(app, runner, smtp_server):
    merchant = factories.make_merchant()
    result = runner.invoke(args=["invite", str(merchant.id), "cli@example.com",
                                 "--role", "merchant_viewer"])  # fmt: skip
    assert result.exit_code == 0, result.output
    token = INVITE_LINK.search(result.output).group(1)
    deliver()
    assert token in parts(smtp_server.only())[0]
    invitation = db.session.scalar(select(Invitation))
    assert invitation.role is Role.MERCHANT_VIEWER and invitation.token_hash != token


def test_a_dead_mail_server_never_blocks_the_page(app, team, smtp_server):
    from tests.access.test_mail import socket_closed

    admin = _signed_in(app, team["admin"])
    with socket_closed() as port:
        app.config["MAIL_PORT"] = port
        data = {"email": "late@example.com", "role": "merchant_viewer"}
        response = _post(admin, "/merchant/team/invitations", data)
        assert response.status_code == 303
        assert "late@example.com" in admin.get(response.location).get_data(as_text=True)
        deliver()
    row = db.session.scalar(select(OutgoingMail).order_by(OutgoingMail.id.desc()).limit(1))
    assert row.to_addresses == ["late@example.com"]
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "ConnectionRefusedError")
