"""Staff recover what the signals lost (issue #11): adopt an unknown authorizer that WeChat lists,
and purge an account whose revocation push was lost, after WeChat confirms it. Over the real
sandbox; the staff console through the test client."""

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AttentionItem, AuditEntry, Authorizer, GrantStatus
from app.models.grants import appid_ref
from app.services.authorization import reconcile
from app.services.custody import sweep
from tests import factories
from tests.staff.conftest import post

LOST = "http://127.0.0.1:9/wechat/events"  # a closed port: pushes sent there are lost


@pytest.fixture
def staff_client(client, auth, staff):
    auth.login(staff.email)
    return client


def _account(flow):
    return flow.sandbox.account(scenario="fresh", type="official_account")


def _connect(flow, account, sets=(1, 2)):
    session = flow.start(sets)
    result = flow.consent(flow.link(session), account, list(sets))
    flow.follow(result["redirect_url"])
    flow.sandbox.flush()


def _audit(action):
    db.session.rollback()
    return list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def _sandbox_grant(flow, appid):
    return next(g for g in flow.sandbox.state()["authorizations"] if g["authorizer_appid"] == appid)


# --- staff purge -----------------------------------------------------------------------------


def test_staff_purge_asks_wechat_and_refuses_a_live_account(flow, staff_client):
    account = _account(flow)
    _connect(flow, account)
    authorizer_id = flow.authorizer(account["appid"]).id
    page = staff_client.get(f"/staff/accounts/{authorizer_id}")
    assert f'href="/staff/accounts/{authorizer_id}/purge"' in page.get_data(as_text=True)
    confirm = staff_client.get(f"/staff/accounts/{authorizer_id}/purge").get_data(as_text=True)
    assert 'method="post"' in confirm and 'name="csrf_token"' in confirm
    before = flow.calls("api_get_authorizer_info")
    response = post(staff_client, f"/staff/accounts/{authorizer_id}/purge", follow_redirects=True)
    assert "still lists this account as authorized" in response.get_data(as_text=True)
    assert flow.calls("api_get_authorizer_info") == before + 1
    assert flow.authorizer(account["appid"]) is not None
    [refusal] = _audit("staff.purge_refused")
    assert refusal.details["reason"] == "still_authorized"


def test_staff_purge_after_a_lost_unauthorized_push(app, flow, staff_client, staff):
    account = _account(flow)
    _connect(flow, account)
    authorizer_id = flow.authorizer(account["appid"]).id
    flow.sandbox.configure(event_url=LOST)
    flow.sandbox.revoke(account["appid"])
    flow.sandbox.flush()
    assert flow.authorizer(account["appid"]) is not None  # the push was lost
    response = post(staff_client, f"/staff/accounts/{authorizer_id}/purge")
    assert response.status_code == 303
    assert flow.authorizer(account["appid"]) is None
    [tombstone] = _audit("authorizer.purged")
    assert tombstone.details["appid_hash"] == appid_ref(account["appid"])
    assert tombstone.details["reason"] == "staff_purge"
    assert tombstone.actor_user_id == staff.id


def test_staff_purge_during_a_wechat_outage_deletes_nothing(flow, staff_client):
    account = _account(flow)
    _connect(flow, account)
    authorizer_id = flow.authorizer(account["appid"]).id
    flow.sandbox.configure(event_url=LOST)
    flow.sandbox.revoke(account["appid"])
    flow.sandbox.set_faults(endpoints={"api_get_authorizer_info": {"errcode": -1}})
    response = post(staff_client, f"/staff/accounts/{authorizer_id}/purge", follow_redirects=True)
    assert "could not confirm the revocation" in response.get_data(as_text=True)
    assert flow.authorizer(account["appid"]) is not None
    [refusal] = _audit("staff.purge_refused")
    assert refusal.details["reason"] == "wechat_unreachable"


def test_staff_purge_needs_csrf(flow, staff_client):
    account = _account(flow)
    _connect(flow, account)
    authorizer_id = flow.authorizer(account["appid"]).id
    response = staff_client.post(f"/staff/accounts/{authorizer_id}/purge")
    assert response.status_code == 400
    assert flow.authorizer(account["appid"]) is not None


# --- adopting an unknown authorizer -----------------------------------------------------------


def _authorized_behind_our_back(flow) -> dict:
    """An account WeChat lists as ours that Grantdesk never stored: its push was lost and its
    code was exchanged by a caller that crashed before storing anything."""
    flow.sandbox.configure(event_url=LOST)
    token = flow.sandbox.component_token()
    result = flow.sandbox.authorize(token)
    exchanged = flow.sandbox.wechat(
        "component/api_query_auth",
        {
            "component_appid": flow.sandbox.component_appid,
            "authorization_code": result["auth_code"],
        },
        token=token,
    )
    assert exchanged["authorization_info"]["authorizer_refresh_token"]
    counts = flow.portal.call(reconcile.reconcile_authorizers)
    assert counts["unknown"] == 1
    db.session.rollback()
    item = db.session.scalar(
        select(AttentionItem).where(AttentionItem.kind == "unknown_authorizer")
    )
    return {"account": result["account"], "item_id": item.id}


def test_staff_adopt_an_unknown_authorizer(flow, staff_client, staff):
    found = _authorized_behind_our_back(flow)
    appid, item_id = found["account"]["appid"], found["item_id"]
    merchant = factories.make_merchant(name="收养商户")
    page = staff_client.get(f"/staff/accounts/attention/{item_id}").get_data(as_text=True)
    assert f'action="/staff/accounts/attention/{item_id}/adopt"' in page
    response = post(
        staff_client, f"/staff/accounts/attention/{item_id}/adopt", {"merchant_id": merchant.id}
    )
    assert response.status_code == 303
    authorizer = flow.authorizer(appid)
    assert response.headers["Location"].endswith(f"/staff/accounts/{authorizer.id}")
    wechat = _sandbox_grant(flow, appid)
    assert authorizer.merchant_id == merchant.id
    assert authorizer.nick_name == found["account"]["nick_name"]
    assert authorizer.grant.status is GrantStatus.ACTIVE
    assert authorizer.grant.set_ids == wechat["permission_set_ids"]
    assert authorizer.token.refresh_token == wechat["refresh_token"]
    assert flow.portal.call(sweep.sweep_tokens).outcomes == {"refreshed": 1}
    [adopted] = _audit("staff.authorizer_adopted")
    assert adopted.actor_user_id == staff.id and adopted.merchant_id == merchant.id
    item = db.session.get(AttentionItem, item_id)
    assert item.resolved_at is not None and item.resolution.startswith("adopted")
    assert flow.calls("api_get_authorizer_list") >= 2  # reconcile, then adoption re-reads it


def test_staff_adopt_refuses_an_account_revoked_since(flow, staff_client):
    found = _authorized_behind_our_back(flow)
    flow.sandbox.revoke(found["account"]["appid"])
    merchant = factories.make_merchant()
    response = post(
        staff_client,
        f"/staff/accounts/attention/{found['item_id']}/adopt",
        {"merchant_id": merchant.id},
    )
    assert response.status_code == 422
    assert "no longer lists this account" in response.get_data(as_text=True)
    assert flow.count(Authorizer) == 0
    assert db.session.get(AttentionItem, found["item_id"]).resolved_at is None


def test_staff_adopt_needs_a_real_merchant(flow, staff_client):
    found = _authorized_behind_our_back(flow)
    response = post(
        staff_client, f"/staff/accounts/attention/{found['item_id']}/adopt", {"merchant_id": 999}
    )
    assert response.status_code == 422
    assert flow.count(Authorizer) == 0
