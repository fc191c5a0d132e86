"""Fixtures for the staff console: a signed-in staff client, accounts, and seeded volume."""

import itertools
from datetime import timedelta

import pytest

from app.cli_volume import seed_volume
from app.extensions import db
from app.models import (
    AttentionItem,
    Authorizer,
    AuthorizerToken,
    Grant,
    GrantChange,
    GrantStatus,
    InboxEvent,
)
from app.models.grants import appid_ref
from app.services import clock
from tests import factories
from tests.conftest import csrf_token

_seq = itertools.count(1)


@pytest.fixture
def staff_client(client, auth, staff):
    """The test client, signed in as provider staff."""
    auth.login(staff.email)
    return client


@pytest.fixture
def seeded(app):
    """A small but realistic fleet (the `flask seed-volume` generator at test size)."""
    return seed_volume(accounts=600, merchants=30, events=3000, seed=7, batch=250)


def make_account(merchant=None, *, set_ids=(1, 2), status=GrantStatus.ACTIVE, **overrides):
    """An authorizer with a grant, history and token custody (committed)."""
    n = next(_seq)
    now = clock.now()
    authorizer = Authorizer(
        **{
            "appid": f"wxstaff{n:010d}",
            "merchant_id": merchant.id if merchant else None,
            "account_type": "official_account",
            "nick_name": f"测试公众号 Staff {n}",
            "principal_name": f"测试主体 {n}",
            "created_at": now,
            **overrides,
        }
    )
    grant = Grant(authorizer=authorizer, status=status, set_ids=list(set_ids), authorized_at=now,
                  updated_at=now)  # fmt: skip
    db.session.add_all([authorizer, grant])
    db.session.add(GrantChange(grant=grant, at=now, kind="authorized", set_ids=list(set_ids),
                               added=list(set_ids), removed=[], source="redirect"))  # fmt: skip
    db.session.add(AuthorizerToken(authorizer=authorizer, access_token="at", refresh_token="rt",
                                   access_expires_at=now + timedelta(hours=1),
                                   consecutive_failures=0))  # fmt: skip
    db.session.commit()
    return authorizer


def make_event(appid, *, outcome="processed", info_type="updateauthorized", fields=None):
    n = next(_seq)
    event = InboxEvent(
        info_type=info_type, authorizer_appid=appid, create_time=1700000000 + n,
        dedupe_key=f"test:{n}", fields=fields or {"InfoType": info_type}, raw_xml="<xml/>",
        outcome=outcome, received_at=clock.now(), error="Boom: x" if outcome == "failed" else None,
    )  # fmt: skip
    db.session.add(event)
    db.session.commit()
    return event


def make_attention(authorizer, kind="session_mismatch", merchant_id=None):
    item = AttentionItem(
        kind=kind, dedupe_key=f"{kind}:{appid_ref(authorizer.appid)}:{next(_seq)}",
        authorizer_appid=authorizer.appid, appid_hash=appid_ref(authorizer.appid),
        merchant_id=merchant_id, details={"reason": "wrong_account"}, created_at=clock.now(),
    )  # fmt: skip
    db.session.add(item)
    db.session.commit()
    return item


def post(client, url, data=None, **kwargs):
    """POST with the CSRF token a browser would have (from the staff overview page)."""
    token = csrf_token(client, "/staff/health")
    return client.post(url, data={"csrf_token": token, **(data or {})}, **kwargs)


__all__ = ["factories", "make_account", "make_attention", "make_event", "post"]
