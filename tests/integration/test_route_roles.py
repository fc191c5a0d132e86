"""Every route × every role answers as expected; the table is checked against the URL map.

A route that is not in EXPECTED fails `test_every_route_is_classified`, so a new route cannot be
forgotten. Each (route, method) runs once per role, signed in through the real sign-in form and
posting with the CSRF token a browser would have. A role expected to get through a POST gets a
fresh world of objects (so its action cannot change what the next role sees); reads, and the
roles expected to be refused, share one world (a refusal that changed something would show as
an unexpected answer anyway).

Answers: a status code, or LOGIN (a redirect to the sign-in page asking to come back). Roles:
  anonymous        nobody signed in
  merchant_viewer  a read-only member (Role.MERCHANT_VIEWER) of that same merchant
  merchant_admin   the administrator of the merchant owning the objects in the URLs
  other_merchant   the administrator of another merchant (must see nothing: 404 on objects)
  viewer, operator, admin   provider staff with that role
"""

import itertools
import secrets
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import (
    AttentionItem,
    Authorizer,
    InboxEvent,
    Merchant,
    Role,
    StaffRole,
    User,
)
from app.models.grants import appid_ref
from app.models.password_reset import PasswordReset
from app.models.sessions import UserSession
from app.services import accounts, clock
from app.services.custody import apikeys
from app.services.platform import platforms
from tests import factories
from tests.conftest import AuthActions, csrf_token
from tests.merchant.conftest import make_account, make_session
from tests.staff.relay_rows import make_delivery, make_route

LOGIN = "login"
ROLES = (
    "anonymous",
    "merchant_viewer",
    "merchant_admin",
    "other_merchant",
    "viewer",
    "operator",
    "admin",
)
_seq = itertools.count(1)


def by_role(
    anonymous, merchant_viewer, merchant_admin, other_merchant, viewer, operator, admin
) -> dict:
    answers = (anonymous, merchant_viewer, merchant_admin, other_merchant, viewer, operator, admin)
    return dict(zip(ROLES, answers, strict=True))


def everyone(answer) -> dict:
    return dict.fromkeys(ROLES, answer)


def signed_in(answer, anonymous=LOGIN) -> dict:
    """Any signed-in user gets `answer` (their own settings, sessions, sign-out)."""
    return {**everyone(answer), "anonymous": anonymous}


def staff_route(viewer, operator, admin) -> dict:
    """A console route: sign-in first, merchants are refused, staff by role."""
    return by_role(LOGIN, 403, 403, 403, viewer, operator, admin)


def merchant_page(own, other=404) -> dict:
    """A merchant page to read: the merchant's viewers see it too; staff are refused; another
    merchant's object is not found."""
    return by_role(LOGIN, own, own, other, 403, 403, 403)


def merchant_change(own, other=404) -> dict:
    """A merchant change (or a page that only leads to one): the merchant's viewers get 403."""
    return by_role(LOGIN, 403, own, other, 403, 403, 403)


def viewer_page(ok=200):
    return staff_route(ok, ok, ok)


def operator_action(ok):
    return staff_route(403, ok, ok)


def admin_action(ok):
    return staff_route(403, 403, ok)


# endpoint -> {method: {role: answer}}; POSTs carry a CSRF token and the data in POST_DATA.
EXPECTED = {
    "static": {"GET": everyone(200)},
    "main.index": {"GET": signed_in(302)},
    "main.healthz": {"GET": everyone(200)},
    "main.set_locale": {"POST": everyone(303)},
    "auth.login": {
        "GET": signed_in(302, anonymous=200),
        "POST": signed_in(302, anonymous=422),
    },
    "auth.logout": {"POST": signed_in(303)},
    "auth.accept_invitation": {"GET": everyone(200), "POST": everyone(422)},
    "auth.settings": {"GET": signed_in(200)},
    "auth.save_preferences": {"POST": signed_in(303)},
    "auth.change_password": {"POST": signed_in(422)},
    # Each user revokes their own current session (and is signed out: back to the sign-in page).
    "auth.revoke_session": {"POST": signed_in(303)},
    "auth.revoke_all_sessions": {"POST": signed_in(303)},
    # Forgot password: the same answer for everyone, whether or not the address exists.
    "password_reset.forgot": {"GET": everyone(200), "POST": everyone(303)},
    # A valid link (in the query string on GET, in the form on POST) works for whoever holds it.
    "password_reset.reset": {"GET": everyone(200), "POST": everyone(303)},
    # No password step passed: back to the sign-in page.
    "auth.two_factor.challenge": {"GET": everyone(303), "POST": everyone(303)},
    "auth.two_factor.enroll": {"GET": by_role(LOGIN, 403, 403, 403, 200, 200, 200)},
    "auth.two_factor.confirm": {"POST": by_role(LOGIN, 403, 403, 403, 422, 422, 422)},
    "auth.two_factor.disable": {"POST": by_role(LOGIN, 403, 403, 403, 422, 422, 422)},
    # The token API takes API keys only; a signed-in browser gets nothing from it.
    "api.list_authorizers": {"GET": everyone(401)},
    "api.get_authorizer": {"GET": everyone(401)},
    "api.authorizer_access_token": {"GET": everyone(401)},
    "api.component_access_token": {"GET": everyone(401)},
    "api.list_platforms": {"GET": everyone(401)},
    "api.platform_component_access_token": {"GET": everyone(401)},
    "api.openapi": {"GET": everyone(200)},
    # Public links by unguessable token (the QR page, the result page, WeChat's redirect).
    # (The link page mints a pre_auth_code: WeChat is unreachable in this test, so 503.)
    "connect.link": {"GET": everyone(503)},
    # The merchant's own users are sent on to the session's page in their area.
    "connect.result": {"GET": by_role(200, 303, 303, 200, 200, 200, 200)},
    # No auth_code and no session: nothing to finish.
    "connect.authorized": {"GET": everyone(404)},
    # WeChat's pushes: authenticated by signature, not by session or CSRF.
    "callbacks.events": {"POST": everyone(400)},
    "callbacks.messages_for": {"POST": everyone(400)},
    "merchant.accounts": {"GET": merchant_page(200, 200)},
    "merchant.account": {"GET": merchant_page(200)},
    # Deleting confirms with WeChat first (unreachable here: 503, nothing deleted).
    "merchant.delete": {"GET": merchant_change(200), "POST": merchant_change(503)},
    "merchant.request_missing": {"POST": merchant_change(303)},
    # How to withdraw access in WeChat, with the account's live status: nothing changes here.
    "merchant.revoke": {"GET": merchant_page(200)},
    "merchant.update": {"GET": merchant_change(200), "POST": merchant_change(422)},
    "merchant.connect": {"GET": merchant_change(200, 200)},
    # Without a chosen account type and sets, the wizard's later steps answer 422.
    "merchant.connect_consent": {
        "GET": merchant_change(422, 422),
        "POST": merchant_change(422, 422),
    },
    "merchant.connect_permissions": {"GET": merchant_change(422, 422)},
    "merchant.session": {"GET": merchant_page(200)},
    # The team: everyone of the merchant sees it; administrators manage it. Another merchant's
    # administrator sees their own team and invites into their own merchant, finds nothing else.
    "merchant.team.index": {"GET": merchant_page(200, 200)},
    "merchant.team.invite": {"POST": merchant_change(303, 303)},
    "merchant.team.resend": {"POST": merchant_change(303)},
    "merchant.team.revoke": {"POST": merchant_change(303)},
    "merchant.team.change_role": {"POST": merchant_change(303)},
    "merchant.team.confirm_remove": {"GET": merchant_change(200)},
    "merchant.team.remove": {"POST": merchant_change(303)},
    "staff.overview": {"GET": viewer_page()},
    "staff.merchants": {"GET": viewer_page()},
    "staff.merchant": {"GET": viewer_page()},
    "staff.create_merchant": {"POST": admin_action(303)},
    "staff.invite": {"POST": admin_action(200)},
    "staff.confirm_disable_user": {"GET": admin_action(200)},
    "staff.disable_user": {"POST": admin_action(303)},
    # Any merchant's team: staff read it on the merchant page, administrators manage it.
    "staff.teams.index": {"GET": viewer_page(303)},
    "staff.teams.resend": {"POST": admin_action(303)},
    "staff.teams.revoke": {"POST": admin_action(303)},
    "staff.teams.change_role": {"POST": admin_action(303)},
    "staff.teams.confirm_remove": {"GET": admin_action(200)},
    "staff.teams.remove": {"POST": admin_action(303)},
    "staff.accounts.index": {"GET": viewer_page()},
    "staff.accounts.export": {"GET": viewer_page()},
    "staff.accounts.detail": {"GET": viewer_page()},
    "staff.accounts.confirm": {"GET": operator_action(200)},
    "staff.accounts.refresh_token": {"POST": operator_action(303)},
    "staff.accounts.resync": {"POST": operator_action(303)},
    # WeChat cannot confirm the revocation here: refused with a message, nothing deleted.
    "staff.accounts.purge": {"POST": operator_action(303)},
    "staff.accounts.confirm_replay": {"GET": operator_action(200)},
    "staff.accounts.replay": {"POST": operator_action(303)},
    "staff.accounts.resolve_form": {"GET": operator_action(200)},
    "staff.accounts.assign": {"POST": operator_action(303)},
    # Adopting asks WeChat for the account (unreachable here): refused on the form, 422.
    "staff.accounts.adopt": {"POST": operator_action(422)},
    "staff.accounts.dismiss": {"POST": operator_action(303)},
    # Bulk actions read their selection from the query string: none here, so back to the list.
    "staff.accounts.bulk_confirm": {"GET": operator_action(303)},
    "staff.accounts.bulk_apply": {"POST": operator_action(303)},
    "staff.sessions": {"GET": viewer_page()},
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
    # Operations (#13): readiness fails while the test database has no migration stamp; the
    # metrics endpoint does not exist while GRANTDESK_METRICS_TOKEN is unset.
    "main.readyz": {"GET": everyone(503)},
    "metrics": {"GET": everyone(404)},
    "auth.save_notices": {"POST": signed_in(303)},
    # No alert channel is configured here: the page says so (303 back to it).
    "staff.platform.send_test_notification": {"POST": operator_action(303)},
    # Experience (#14): the provider's logo is public (no logo stored here: 404).
    "main.provider_logo": {"GET": everyone(404)},
    # Accounts per platform (#16): a platform's logo is public too (none stored here: 404);
    # administrators choose the platforms a merchant may authorize.
    "main.platform_logo": {"GET": everyone(404)},
    "staff.merchant_platforms": {"POST": admin_action(303)},
    "staff.provider.settings": {"GET": admin_action(200), "POST": admin_action(303)},
    "staff.notes.add_merchant_note": {"POST": operator_action(303)},
    "staff.notes.add_account_note": {"POST": operator_action(303)},
    "staff.notes.attention_items": {"GET": viewer_page()},
    # Relay (#15): integrations. Staff read; administrators change routes; operators test-send
    # (the route's target is a closed port here: the page shows the error) and replay.
    "staff.integrations.index": {"GET": viewer_page()},
    "staff.integrations.new_route": {"GET": admin_action(200)},
    "staff.integrations.create_route": {"POST": admin_action(303)},
    "staff.integrations.detail": {"GET": viewer_page()},
    "staff.integrations.edit_route": {"GET": admin_action(200)},
    "staff.integrations.update_route": {"POST": admin_action(303)},
    "staff.integrations.pause_route": {"POST": admin_action(303)},
    "staff.integrations.resume_route": {"POST": admin_action(303)},
    "staff.integrations.test_route": {"POST": operator_action(200)},
    "staff.integrations.confirm_delete": {"GET": admin_action(200)},
    "staff.integrations.delete_route": {"POST": admin_action(303)},
    "staff.integrations.replay": {"POST": operator_action(303)},
    "staff.integrations.confirm_replay_dead": {"GET": operator_action(200)},
    "staff.integrations.replay_dead": {"POST": operator_action(303)},
    # Platforms (#16): staff read them; administrators add, edit, replace keys and retire (a
    # platform of its own per world, not the default one, whose keys and status are WECHAT_*).
    "staff.platforms.index": {"GET": viewer_page()},
    "staff.platforms.new": {"GET": admin_action(200)},
    "staff.platforms.create": {"POST": admin_action(303)},
    "staff.platforms.edit": {"GET": admin_action(200)},
    "staff.platforms.update": {"POST": admin_action(303)},
    "staff.platforms.replace_keys": {"POST": admin_action(303)},
    "staff.platforms.update_sets": {"POST": admin_action(303)},
    "staff.platforms.confirm_retire": {"GET": admin_action(200)},
    "staff.platforms.retire": {"POST": admin_action(303)},
    "staff.platforms.reactivate": {"POST": admin_action(303)},
}


@dataclass
class World:
    """The objects the URLs point at, all of merchant A (made fresh for each role)."""

    merchant: Merchant
    admin: User
    viewer: User
    colleague: User
    other_admin: User
    account: Authorizer
    event: InboxEvent
    item: AttentionItem
    key_id: int
    session_public_id: str
    link_token: str
    invitation_token: str
    invitation_id: int
    reset_token: str
    staff_target: User
    staff: dict
    route_id: int
    dead_delivery_id: int
    platform_appid: str


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
    # The colleague is the member the team routes act on; the reset link is theirs too.
    colleague = factories.make_user(Role.MERCHANT_VIEWER, merchant_id=merchant.id)
    reset_token = secrets.token_urlsafe(16)
    db.session.add(
        PasswordReset(
            user_id=colleague.id,
            token_hash=accounts.token_hash(reset_token),
            expires_at=clock.now() + timedelta(hours=1),
        )
    )
    db.session.commit()
    platform = platforms.add(
        component_appid=f"wxroles{n:010d}", appsecret="roles-walk-secret", token="roleswalk",
        encoding_aes_key="bcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH", name=f"Roles {n}",
    )  # fmt: skip
    db.session.commit()
    route = make_route(url="http://127.0.0.1:9/relay")
    dead = make_delivery(route, account, status="dead", attempts=8, last_error="timeout")
    return World(
        merchant=merchant,
        admin=admin,
        viewer=factories.make_user(Role.MERCHANT_VIEWER, merchant_id=merchant.id),
        colleague=colleague,
        other_admin=factories.make_merchant_admin(),
        account=account,
        event=event,
        item=item,
        key_id=key.id,
        session_public_id=session.public_id,
        link_token=session.link_token,
        invitation_token=invitation_token,
        invitation_id=accounts.find_open_invitation(invitation_token).id,
        reset_token=reset_token,
        staff_target=factories.make_staff(staff_role=StaffRole.VIEWER),
        staff={role: factories.make_staff(staff_role=StaffRole(role)) for role in StaffRole},
        route_id=route.id,
        dead_delivery_id=dead.id,
        platform_appid=platform.component_appid,
    )


def url_args(endpoint: str, rule, world: World, user: User | None) -> dict:
    if endpoint.startswith("staff.users."):
        user_id = world.staff_target.id
    elif ".team" in endpoint:
        user_id = world.colleague.id
    else:
        user_id = world.admin.id
    values = {
        "account_id": world.account.id,
        "authorizer_id": world.account.id,
        "merchant_id": world.merchant.id,
        "item_id": world.item.id,
        "event_id": world.event.id,
        "key_id": world.key_id,
        "user_id": user_id,
        "invitation_id": world.invitation_id,
        "session_id": _current_session_id(user) if user else 0,
        "public_id": world.session_public_id,
        "token": world.link_token if endpoint == "connect.link" else world.invitation_token,
        "appid": world.account.appid,
        "component_appid": world.platform_appid
        if endpoint.startswith("staff.platforms.")
        else "wx3a1b5c7d9e0f2468",
        "action": "resync" if endpoint.startswith("staff.accounts.bulk_") else "purge",
        "filename": "css/app.css",
        "route_id": world.route_id,
        "delivery_id": world.dead_delivery_id,
    }
    args = {name: values[name] for name in rule.arguments}
    if endpoint == "password_reset.reset":
        args["token"] = world.reset_token  # the link carries it in the query string
    return args


def _current_session_id(user: User) -> int:
    """The user's latest sign-in session (the one this test client holds)."""
    return db.session.scalar(
        select(UserSession.id)
        .where(UserSession.user_id == user.id)
        .order_by(UserSession.id.desc())
        .limit(1)
    )


def post_data(endpoint: str, world: World) -> dict:
    """Valid input where the route needs some (so allowed roles reach the action itself)."""
    n = next(_seq)
    return {
        "main.set_locale": {"locale": "en", "next": "/"},
        "auth.login": {"email": "nobody@example.com", "password": "wrong password!"},
        "staff.create_merchant": {"name": f"Roles {n}"},
        "staff.invite": {"email": f"invitee-roles{n}@example.com"},
        "staff.merchant_platforms": {"scope": "all"},
        "staff.accounts.assign": {"merchant_id": world.merchant.id},
        "staff.platform.create_api_key": {
            "name": "roles",
            "scopes": "tokens:read",
            "rate_limit": "10 per minute",
        },
        "staff.users.create": {"email": f"staff-roles{n}@example.com", "role": "viewer"},
        "staff.users.change_role": {"role": "operator"},
        "auth.save_preferences": {"pref-locale": "en", "pref-timezone": "UTC"},
        "password_reset.forgot": {"email": world.colleague.email},
        "password_reset.reset": {
            "token": world.reset_token,
            "password": "a brand new passphrase",
            "confirm": "a brand new passphrase",
        },
        "merchant.team.invite": {"email": f"team-roles{n}@example.com", "role": "merchant_viewer"},
        "merchant.team.change_role": {"role": "merchant_admin"},
        "staff.teams.change_role": {"role": "merchant_admin"},
        "staff.accounts.adopt": {"merchant_id": world.merchant.id},
        "auth.save_notices": {"notices-account_notices": "y"},
        "staff.provider.settings": {"display_name": f"Roles provider {n}"},
        "staff.notes.add_merchant_note": {"body": "A note from the role walk."},
        "staff.notes.add_account_note": {"body": "A note from the role walk."},
        "staff.platforms.create": {
            "component_appid": f"wxrolesnew{n:08d}",
            "name": f"Roles platform {n}",
            "appsecret": "roles-walk-secret",
            "token": "roleswalk",
            "encoding_aes_key": "bcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH",
        },
        "staff.platforms.update": {
            "name": f"Roles platform {n}",
            "release_state": "released",
            "test_accounts": "wxaaaa1111bbbb2222",
        },
        "staff.platforms.replace_keys": {"appsecret": "a-new-secret-for-the-walk"},
        "staff.platforms.update_sets": {"offered_set_ids": ["1", "2"], "required_set_ids": ["1"]},
        **dict.fromkeys(
            ("staff.integrations.create_route", "staff.integrations.update_route"),
            {
                "name": f"Roles route {n}",
                "url": "https://crm.example.com/in",
                "format": "json",
                "mode": "async",
                "secret": "a-secret-for-the-role-walk",
                "scope": "all",
            },
        ),
    }.get(endpoint, {})


def sign_in(app, role: str, world: World):
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    user = {
        "anonymous": None,
        "merchant_viewer": world.viewer,
        "merchant_admin": world.admin,
        "other_merchant": world.other_admin,
    }.get(role) or world.staff.get(role)
    if user is not None:
        answer = AuthActions(client).login(user.email)
        assert answer.status_code == 303, role
    return client, user


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


def _changes_nothing(answer) -> bool:
    """A refusal: sent to sign in, or a 4xx/5xx answer (nothing was changed)."""
    return answer == LOGIN or answer >= 400


@pytest.mark.parametrize(("endpoint", "method"), list(_cases()))
def test_route_answers_each_role_as_expected(app, endpoint, method):
    # Sign-ins of six roles per route must not trip the sign-in limit; WeChat is unreachable.
    app.config["LOGIN_RATE_LIMIT"] = app.config["MFA_RATE_LIMIT"] = "1000 per minute"
    app.config["WECHAT_API_BASE"] = "http://127.0.0.1:9"
    rule = next(r for r in app.url_map.iter_rules() if r.endpoint == endpoint)
    got = {}
    shared = None
    for role in ROLES:
        if method == "GET" or _changes_nothing(EXPECTED[endpoint][method][role]):
            world = shared = shared or make_world()
        else:
            world = make_world()
        client, user = sign_in(app, role, world)
        with app.test_request_context():
            from flask import url_for

            url = url_for(endpoint, **url_args(endpoint, rule, world, user))
        if method == "GET":
            response = client.get(url, buffered=True)  # runs streamed bodies (CSV) in context
        else:
            page = "/settings" if role != "anonymous" else "/login"
            data = {"csrf_token": csrf_token(client, page), **post_data(endpoint, world)}
            response = client.post(url, data=data, buffered=True)
        got[role] = answer_of(response)
    assert got == EXPECTED[endpoint][method]
