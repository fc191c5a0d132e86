"""Every route × every role answers as expected; the table is checked against the URL map.

A route that is not in EXPECTED fails `test_every_route_is_classified`, so a new route cannot be
forgotten. Each (route, method) runs once per role against a fresh world of objects (so one
role's action cannot change what the next one sees), signed in through the real sign-in form and
posting with the CSRF token a browser would have.

Answers: a status code, or LOGIN (a redirect to the sign-in page asking to come back). Roles:
  anonymous        nobody signed in
  merchant_admin   the administrator of the merchant owning the objects in the URLs
  other_merchant   the administrator of another merchant (must see nothing: 404 on objects)
  viewer, operator, admin   provider staff with that role
(merchant_viewer: added with merchant teams.)
"""

import itertools
from dataclasses import dataclass
from datetime import timedelta

import pytest

from app.extensions import db
from app.models import AttentionItem, Authorizer, InboxEvent, Merchant, StaffRole, User
from app.models.grants import appid_ref
from app.services import accounts, clock
from app.services.custody import apikeys
from tests import factories
from tests.conftest import AuthActions, csrf_token
from tests.merchant.conftest import make_account, make_session

LOGIN = "login"
ROLES = ("anonymous", "merchant_admin", "other_merchant", "viewer", "operator", "admin")
_seq = itertools.count(1)


def by_role(anonymous, merchant_admin, other_merchant, viewer, operator, admin) -> dict:
    answers = (anonymous, merchant_admin, other_merchant, viewer, operator, admin)
    return dict(zip(ROLES, answers, strict=True))


def everyone(answer) -> dict:
    return dict.fromkeys(ROLES, answer)


def staff_route(viewer, operator, admin) -> dict:
    """A console route: sign-in first, merchants are refused, staff by role."""
    return by_role(LOGIN, 403, 403, viewer, operator, admin)


def merchant_route(own, other=404) -> dict:
    """A merchant page: sign-in first, staff refused, another merchant's object not found."""
    return by_role(LOGIN, own, other, 403, 403, 403)


def viewer_page(ok=200):
    return staff_route(ok, ok, ok)


def operator_action(ok):
    return staff_route(403, ok, ok)


def admin_action(ok):
    return staff_route(403, 403, ok)


# endpoint -> {method: {role: answer}}; POSTs carry a CSRF token and the data in POST_DATA.
EXPECTED = {
    "static": {"GET": everyone(200)},
    "main.index": {"GET": by_role(LOGIN, 302, 302, 302, 302, 302)},
    "main.healthz": {"GET": everyone(200)},
    "main.set_locale": {"POST": everyone(303)},
    "auth.login": {
        "GET": by_role(200, 302, 302, 302, 302, 302),
        "POST": by_role(422, 302, 302, 302, 302, 302),
    },
    "auth.logout": {"POST": by_role(LOGIN, 303, 303, 303, 303, 303)},
    "auth.accept_invitation": {"GET": everyone(200), "POST": everyone(422)},
    "auth.settings": {"GET": by_role(LOGIN, 200, 200, 200, 200, 200)},
    "auth.save_preferences": {"POST": by_role(LOGIN, 303, 303, 303, 303, 303)},
    "auth.change_password": {"POST": by_role(LOGIN, 422, 422, 422, 422, 422)},
    # No password step passed: back to the sign-in page.
    "auth.two_factor.challenge": {"GET": everyone(303), "POST": everyone(303)},
    "auth.two_factor.enroll": {"GET": by_role(LOGIN, 403, 403, 200, 200, 200)},
    "auth.two_factor.confirm": {"POST": by_role(LOGIN, 403, 403, 422, 422, 422)},
    "auth.two_factor.disable": {"POST": by_role(LOGIN, 403, 403, 422, 422, 422)},
    # The token API takes API keys only; a signed-in browser gets nothing from it.
    "api.list_authorizers": {"GET": everyone(401)},
    "api.get_authorizer": {"GET": everyone(401)},
    "api.authorizer_access_token": {"GET": everyone(401)},
    "api.component_access_token": {"GET": everyone(401)},
    "api.openapi": {"GET": everyone(200)},
    # Public links by unguessable token (the QR page, the result page, WeChat's redirect).
    # (The link page mints a pre_auth_code: WeChat is unreachable in this test, so 503.)
    "connect.link": {"GET": everyone(503)},
    # The merchant's own administrator is sent on to the session's page in their area.
    "connect.result": {"GET": by_role(200, 303, 200, 200, 200, 200)},
    # No auth_code and no session: nothing to finish.
    "connect.authorized": {"GET": everyone(404)},
    # WeChat's pushes: authenticated by signature, not by session or CSRF.
    "callbacks.events": {"POST": everyone(400)},
    "callbacks.messages_for": {"POST": everyone(400)},
    "merchant.accounts": {"GET": merchant_route(200, 200)},
    "merchant.account": {"GET": merchant_route(200)},
    # Deleting confirms with WeChat first (unreachable here: 503, nothing deleted).
    "merchant.delete": {"GET": merchant_route(200), "POST": merchant_route(503)},
    "merchant.request_missing": {"POST": merchant_route(303)},
    "merchant.revoke": {"GET": merchant_route(200)},
    "merchant.update": {"GET": merchant_route(200), "POST": merchant_route(422)},
    "merchant.connect": {"GET": merchant_route(200, 200)},
    # Without a chosen account type and sets, the wizard's later steps answer 422.
    "merchant.connect_consent": {"GET": merchant_route(422, 422), "POST": merchant_route(422, 422)},
    "merchant.connect_permissions": {"GET": merchant_route(422, 422)},
    "merchant.session": {"GET": merchant_route(200)},
    "staff.overview": {"GET": viewer_page()},
    "staff.merchants": {"GET": viewer_page()},
    "staff.merchant": {"GET": viewer_page()},
    "staff.create_merchant": {"POST": admin_action(303)},
    "staff.invite": {"POST": admin_action(200)},
    "staff.confirm_disable_user": {"GET": admin_action(200)},
    "staff.disable_user": {"POST": admin_action(303)},
    "staff.accounts.index": {"GET": viewer_page()},
    "staff.accounts.export": {"GET": viewer_page()},
    "staff.accounts.detail": {"GET": viewer_page()},
    "staff.accounts.confirm": {"GET": operator_action(200)},
    "staff.accounts.refresh_token": {"POST": operator_action(303)},
    "staff.accounts.resync": {"POST": operator_action(303)},
    "staff.accounts.confirm_replay": {"GET": operator_action(200)},
    "staff.accounts.replay": {"POST": operator_action(303)},
    "staff.accounts.resolve_form": {"GET": operator_action(200)},
    "staff.accounts.assign": {"POST": operator_action(303)},
    "staff.accounts.dismiss": {"POST": operator_action(303)},
    # Bulk actions read their selection from the query string: none here, so back to the list.
    "staff.accounts.bulk_confirm": {"GET": operator_action(303)},
    "staff.accounts.bulk_apply": {"POST": operator_action(303)},
    "staff.sessions": {"GET": viewer_page()},
    # Routes merged without a row (classified by helper J from their observed, checked answers).
    # Not ready: no component ticket and WeChat unreachable in this test.
    "main.readyz": {"GET": everyone(503)},
    "main.provider_logo": {"GET": everyone(404)},  # no logo uploaded
    "metrics": {"GET": everyone(404)},  # metrics are off unless configured
    "auth.save_notices": {"POST": by_role(LOGIN, 303, 303, 303, 303, 303)},
    # Someone else's sign-in session is not found; signing out everywhere is one's own.
    "auth.revoke_session": {"POST": by_role(LOGIN, 404, 404, 404, 404, 404)},
    "auth.revoke_all_sessions": {"POST": by_role(LOGIN, 303, 303, 303, 303, 303)},
    "password_reset.forgot": {"GET": everyone(200), "POST": everyone(422)},
    # No (valid) reset token in the URL: the link is gone.
    "password_reset.reset": {"GET": everyone(410), "POST": everyone(410)},
    "merchant.team.index": {"GET": merchant_route(200, 200)},
    "merchant.team.invite": {"POST": merchant_route(422, 422)},
    "merchant.team.resend": {"POST": merchant_route(303)},
    "merchant.team.revoke": {"POST": merchant_route(303)},
    # The URL's member is the merchant's only administrator: the change is refused (409).
    "merchant.team.change_role": {"POST": merchant_route(409)},
    "merchant.team.confirm_remove": {"GET": merchant_route(200)},
    "merchant.team.remove": {"POST": merchant_route(409)},
    # WeChat is unreachable: nothing is purged, back to the account.
    "staff.accounts.purge": {"POST": operator_action(303)},
    "staff.accounts.adopt": {"POST": operator_action(422)},
    "staff.platform.send_test_notification": {"POST": operator_action(303)},
    "staff.provider.settings": {"GET": admin_action(200), "POST": admin_action(422)},
    "staff.notes.add_account_note": {"POST": operator_action(303)},
    "staff.notes.add_merchant_note": {"POST": operator_action(303)},
    "staff.notes.attention_items": {"GET": viewer_page()},
    "staff.teams.index": {"GET": viewer_page(303)},  # the team lives on the merchant page
    "staff.teams.resend": {"POST": admin_action(303)},
    "staff.teams.revoke": {"POST": admin_action(303)},
    "staff.teams.change_role": {"POST": admin_action(303)},
    "staff.teams.confirm_remove": {"GET": admin_action(200)},
    "staff.teams.remove": {"POST": admin_action(303)},
    "staff.platform.health_page": {"GET": viewer_page()},
    "staff.platform.audit_log": {"GET": viewer_page()},
    "staff.platform.api_keys": {"GET": admin_action(200)},
    "staff.platform.create_api_key": {"POST": admin_action(200)},
    "staff.platform.confirm_revoke": {"GET": admin_action(200)},
    "staff.platform.revoke_api_key": {"POST": admin_action(303)},
    "staff.users.index": {"GET": admin_action(200)},
    "staff.users.create": {"POST": admin_action(200)},
    "staff.users.change_role": {"POST": admin_action(303)},
    "staff.users.confirm_reset_two_factor": {"GET": admin_action(200)},
    "staff.users.reset_two_factor": {"POST": admin_action(303)},
}


@dataclass
class World:
    """The objects the URLs point at, all of merchant A (made fresh for each role)."""

    merchant: Merchant
    admin: User
    other_admin: User
    account: Authorizer
    event: InboxEvent
    item: AttentionItem
    key_id: int
    session_public_id: str
    link_token: str
    invitation_token: str
    invitation_id: int
    staff_target: User
    staff: dict


def make_world() -> World:
    merchant = factories.make_merchant()
    admin = factories.make_merchant_admin(merchant)
    account = make_account(merchant)
    n = next(_seq)
    event = InboxEvent(
        info_type="updateauthorized", authorizer_appid=account.appid, create_time=1700000000 + n,
        dedupe_key=f"roles:{n}", fields={"InfoType": "updateauthorized"}, raw_xml=(
            f"<xml><AppId>wx3a1b5c7d9e0f2468</AppId><CreateTime>{1700000000 + n}</CreateTime>"
            "<InfoType>notify_roles_test</InfoType></xml>"
        ),
        outcome="failed", received_at=clock.now(), error="Boom",
    )  # fmt: skip
    item = AttentionItem(
        kind="session_mismatch", dedupe_key=f"roles:{n}", authorizer_appid=account.appid,
        appid_hash=appid_ref(account.appid), merchant_id=merchant.id,
        details={"reason": "wrong_account"}, created_at=clock.now(),
    )  # fmt: skip
    db.session.add_all([event, item])
    db.session.commit()
    key, _secret = apikeys.create_api_key(f"key {n}", ["tokens:read"])
    session = make_session(merchant, admin)
    invitation_token = factories.make_invitation(merchant, expires_in=timedelta(hours=1))
    return World(
        merchant=merchant,
        admin=admin,
        other_admin=factories.make_merchant_admin(),
        account=account,
        event=event,
        item=item,
        key_id=key.id,
        session_public_id=session.public_id,
        link_token=session.link_token,
        invitation_token=invitation_token,
        invitation_id=accounts.find_open_invitation(invitation_token).id,
        staff_target=factories.make_staff(staff_role=StaffRole.VIEWER),
        staff={role: factories.make_staff(staff_role=StaffRole(role)) for role in StaffRole},
    )


def url_args(endpoint: str, rule, world: World) -> dict:
    values = {
        "account_id": world.account.id,
        "authorizer_id": world.account.id,
        "merchant_id": world.merchant.id,
        "item_id": world.item.id,
        "event_id": world.event.id,
        "key_id": world.key_id,
        "user_id": world.staff_target.id if endpoint.startswith("staff.users.") else world.admin.id,
        "public_id": world.session_public_id,
        "token": world.link_token if endpoint == "connect.link" else world.invitation_token,
        "appid": world.account.appid,
        "action": "resync",
        "invitation_id": world.invitation_id,
        "session_id": 2_147_483_647,  # nobody's sign-in session: not found for everyone
        "filename": "css/app.css",
    }
    return {name: values[name] for name in rule.arguments}


def post_data(endpoint: str, world: World) -> dict:
    """Valid input where the route needs some (so allowed roles reach the action itself)."""
    n = next(_seq)
    return {
        "main.set_locale": {"locale": "en", "next": "/"},
        "auth.login": {"email": "nobody@example.com", "password": "wrong password!"},
        "staff.create_merchant": {"name": f"Roles {n}"},
        "staff.invite": {"email": f"invitee-roles{n}@example.com"},
        "staff.accounts.assign": {"merchant_id": world.merchant.id},
        "staff.platform.create_api_key": {
            "name": "roles",
            "scopes": "tokens:read",
            "rate_limit": "10 per minute",
        },
        "staff.users.create": {"email": f"staff-roles{n}@example.com", "role": "viewer"},
        "staff.users.change_role": {"role": "operator"},
        "merchant.team.change_role": {"role": "merchant_viewer"},
        "staff.teams.change_role": {"role": "merchant_viewer"},
        "auth.save_preferences": {"pref-locale": "en", "pref-timezone": "UTC"},
    }.get(endpoint, {})


def sign_in(app, role: str, world: World):
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    user = {
        "anonymous": None,
        "merchant_admin": world.admin,
        "other_merchant": world.other_admin,
    }.get(role) or world.staff.get(role)
    if user is not None:
        answer = AuthActions(client).login(user.email)
        assert answer.status_code == 303, role
    return client


def answer_of(response):
    location = response.headers.get("Location", "")
    if response.status_code in (301, 302, 303) and location.startswith("/login?next="):
        return LOGIN
    return response.status_code


def _cases():
    from app import create_app

    app = create_app({"ENV_NAME": "test", "SQLALCHEMY_DATABASE_URI": "sqlite://"})
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield pytest.param(rule.endpoint, method, id=f"{method} {rule.rule}")


def test_every_route_is_classified(app):
    """Fails for any route (or method) of the URL map missing from EXPECTED, and vice versa."""
    seen = {
        (rule.endpoint, method)
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    table = {(endpoint, method) for endpoint, m in EXPECTED.items() for method in m}
    assert seen - table == set(), "routes without expected answers per role"
    assert table - seen == set(), "expectations for routes that no longer exist"
    for endpoint, methods in EXPECTED.items():
        for method, answers in methods.items():
            assert set(answers) == set(ROLES), (endpoint, method)


def test_every_staff_route_names_its_role(app):
    """Deny by default: every console view carries require_staff_role."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("staff."):
            view = app.view_functions[rule.endpoint]
            assert getattr(view, "required_staff_role", None) is not None, rule.endpoint


@pytest.mark.parametrize(("endpoint", "method"), list(_cases()))
def test_route_answers_each_role_as_expected(app, endpoint, method):
    # Sign-ins of six roles per route must not trip the sign-in limit; WeChat is unreachable.
    app.config["LOGIN_RATE_LIMIT"] = app.config["MFA_RATE_LIMIT"] = "1000 per minute"
    app.config["PASSWORD_RESET_RATE_LIMIT"] = "1000 per minute"
    app.config["PASSWORD_RESET_CLIENT_RATE_LIMIT"] = "1000 per minute"
    app.config["WECHAT_API_BASE"] = "http://127.0.0.1:9"
    rule = next(r for r in app.url_map.iter_rules() if r.endpoint == endpoint)
    got = {}
    shared = make_world() if method == "GET" else None  # reads change nothing: one world will do
    for role in ROLES:
        world = shared or make_world()
        client = sign_in(app, role, world)
        with app.test_request_context():
            from flask import url_for

            url = url_for(endpoint, **url_args(endpoint, rule, world))
        if method == "GET":
            response = client.get(url, buffered=True)  # runs streamed bodies (CSV) in context
        else:
            page = "/settings" if role != "anonymous" else "/login"
            data = {"csrf_token": csrf_token(client, page), **post_data(endpoint, world)}
            response = client.post(url, data=data, buffered=True)
        got[role] = answer_of(response)
    assert got == EXPECTED[endpoint][method]
