"""A merchant never sees another merchant's accounts, sessions or events: 404 everywhere."""

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuthorizationSession
from app.services.authorization import purge
from tests import factories
from tests.conftest import csrf_token
from tests.merchant.conftest import HX, make_account, make_session


@pytest.fixture
def foreign(app):
    """Another merchant's account, open session and purged account."""
    other = factories.make_merchant_admin()
    account = make_account(other.merchant)
    session = make_session(other.merchant, other)
    gone = make_account(other.merchant)
    gone_id = gone.id
    purge.purge_authorizer(gone.appid, reason="unauthorized")
    return {"account": account.id, "session": session.public_id, "gone": gone_id}


GETS = [
    "/merchant/accounts/{account}",
    "/merchant/accounts/{account}/update",
    "/merchant/accounts/{account}/revoke",
    "/merchant/accounts/{account}/delete",
    "/merchant/accounts/{gone}/revoke",
    "/merchant/accounts/{gone}/delete",
    "/merchant/sessions/{session}",
    "/merchant/accounts/999999",
    "/merchant/sessions/nope",
]
POSTS = [
    "/merchant/accounts/{account}/request-missing",
    "/merchant/accounts/{account}/update",
    "/merchant/accounts/{account}/delete",
]


@pytest.mark.parametrize("path", GETS)
@pytest.mark.parametrize("headers", [{}, HX], ids=["page", "htmx"])
def test_foreign_objects_are_404(logged_in, foreign, path, headers):
    assert logged_in.get(path.format(**foreign), headers=headers).status_code == 404


@pytest.mark.parametrize("path", POSTS)
def test_foreign_writes_are_404_and_change_nothing(logged_in, foreign, path):
    before = db.session.scalar(select(func.count(AuthorizationSession.id)))
    data = {"csrf_token": csrf_token(logged_in, "/merchant/"), "sets": ["1"], "agree": "y"}
    assert logged_in.post(path.format(**foreign), data=data).status_code == 404
    assert db.session.scalar(select(func.count(AuthorizationSession.id))) == before


def test_landing_lists_only_own_accounts_and_sessions(logged_in, admin, foreign):
    own = make_account(admin.merchant, nick_name="Mine Only")
    page = logged_in.get("/merchant/").get_data(as_text=True)
    assert "Mine Only" in page and f"/merchant/accounts/{own.id}" in page
    assert f'/merchant/accounts/{foreign["account"]}"' not in page
    assert foreign["session"] not in page


def test_staff_and_anonymous_cannot_enter(client, auth, foreign):
    assert client.get("/merchant/").status_code == 302
    staff = factories.make_staff()
    auth.login(staff.email)
    assert client.get("/merchant/").status_code == 403
