"""Fixtures for the merchant pages: a signed-in admin, accounts and sessions of their merchant."""

import itertools

import pytest

from app.extensions import db
from app.models import Authorizer, AuthorizerToken, Grant, GrantChange, SessionStatus
from app.services import clock
from app.services.authorization import sessions
from tests import factories

_appids = itertools.count(1)


def make_account(merchant, *, account_type="official_account", set_ids=(1, 2, 3), **overrides):
    """A connected account with its grant, first history entry and token custody."""
    n = next(_appids)
    account = Authorizer(
        appid=f"wxacc{n:012d}",
        merchant_id=merchant.id,
        account_type=account_type,
        nick_name=overrides.pop("nick_name", f"测试账号 Shop {n}"),
        principal_name="示例科技有限公司",
        user_name=f"gh_{n:012d}",
        verify_type_id=0,
        profile_fetched_at=clock.now(),
        **overrides,
    )
    grant = Grant(authorizer=account, set_ids=sorted(set_ids), func_info=[])
    db.session.add_all([account, grant, AuthorizerToken(authorizer=account)])
    db.session.flush()
    db.session.add(
        GrantChange(grant=grant, kind="authorized", set_ids=sorted(set_ids),
                    added=sorted(set_ids), removed=[], source="redirect")
    )  # fmt: skip
    db.session.commit()
    return account


def make_session(merchant, user=None, *, set_ids=(1, 2, 3), auth_type=1, **fields):
    """An authorization session (no WeChat call), optionally already settled."""
    session = sessions.start_session(merchant, set_ids, user=user, auth_type=auth_type)
    for key, value in fields.items():
        setattr(session, key, value)
    db.session.commit()
    return session


def complete(session, account, granted):
    """Settle a session as the exchange would."""
    session.status = SessionStatus.COMPLETED
    session.authorizer_appid = account.appid
    session.granted_set_ids = sorted(granted)
    session.completed_at = clock.now()
    session.completed_via = "redirect"
    db.session.commit()
    return session


@pytest.fixture
def admin(app):
    return factories.make_merchant_admin()


@pytest.fixture
def logged_in(client, auth, admin):
    """The client, signed in as a merchant admin (English)."""
    auth.login(admin.email)
    client.post("/locale", data={"locale": "en", "csrf_token": _token(client)})
    return client


@pytest.fixture
def other_admin(app):
    return factories.make_merchant_admin()


def _token(client):
    from tests.conftest import csrf_token

    return csrf_token(client, "/settings")


HX = {"HX-Request": "true"}
