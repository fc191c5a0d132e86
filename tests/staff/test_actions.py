"""Every console action: confirmation page, effect, audit entry; CSRF required."""

from types import SimpleNamespace

from sqlalchemy import select

from app.extensions import db
from app.models import ApiKey, AttentionItem, AuditEntry, Authorizer, InboxEvent, User
from app.services.authorization import authorizers, grants
from app.services.custody import sweep
from app.services.platform import intake
from app.services.platform.platforms import default_appid
from tests import factories
from tests.staff.conftest import make_account, make_attention, make_event, post


def audit_actions(target_id=None):
    query = select(AuditEntry.action)
    if target_id is not None:
        query = query.where(AuditEntry.target_id == str(target_id))
    return list(db.session.scalars(query))


def test_refresh_token_now(staff_client, monkeypatch):
    account = make_account(factories.make_merchant())
    calls = []

    def fake_refresh(authorizer_id, owner):
        calls.append(authorizer_id)
        row = db.session.get(Authorizer, authorizer_id).token
        row.lease_owner = row.lease_until = None
        row.access_token = "fresh"
        db.session.commit()
        return "refreshed"

    monkeypatch.setattr(sweep, "refresh_one", fake_refresh)
    url = f"/staff/accounts/{account.id}/refresh_token"
    page = staff_client.get(url).get_data(as_text=True)
    assert 'method="post"' in page and url in page
    response = post(staff_client, url)
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/staff/accounts/{account.id}")
    assert calls == [account.id]
    assert "staff.token_refreshed" in audit_actions(account.id)
    assert db.session.get(Authorizer, account.id).token.access_token == "fresh"


def test_refresh_failure_is_flashed_and_audited(staff_client, monkeypatch):
    account = make_account()
    monkeypatch.setattr(sweep, "refresh_one", lambda *a: "backoff")
    response = post(staff_client, f"/staff/accounts/{account.id}/refresh_token",
                    follow_redirects=True)  # fmt: skip
    assert "backoff" in response.get_data(as_text=True)
    entry = db.session.scalar(
        select(AuditEntry).where(AuditEntry.action == "staff.token_refreshed")
    )
    assert entry.details["outcome"] == "backoff"


def test_resync_calls_the_grants_service(staff_client, monkeypatch):
    account = make_account()
    seen = []
    monkeypatch.setattr(grants, "refresh_authorizer", lambda a, source: seen.append((a.id, source)))
    assert staff_client.get(f"/staff/accounts/{account.id}/resync").status_code == 200
    assert post(staff_client, f"/staff/accounts/{account.id}/resync").status_code == 303
    assert seen == [(account.id, "staff")]
    assert "staff.authorizer_resynced" in audit_actions(account.id)


def test_resync_when_wechat_has_nothing(staff_client, monkeypatch):
    account = make_account()

    def gone(authorizer, source):
        raise authorizers.AuthorizerNotFound()

    monkeypatch.setattr(grants, "refresh_authorizer", gone)
    html = post(staff_client, f"/staff/accounts/{account.id}/resync", follow_redirects=True)
    assert "nothing changed" in html.get_data(as_text=True) or "没有" in html.get_data(as_text=True)
    entry = db.session.scalar(
        select(AuditEntry).where(AuditEntry.action == "staff.authorizer_resynced")
    )
    assert entry.details["outcome"] == "not_found"


def test_replay_a_failed_event(staff_client, monkeypatch):
    account = make_account()
    event = make_event(account.appid, outcome="failed", info_type="staff_test_type")
    handled = []
    monkeypatch.setitem(intake.HANDLERS, "staff_test_type", lambda e: handled.append(e.info_type))
    monkeypatch.setattr(
        intake,
        "parse_event",
        lambda xml: SimpleNamespace(info_type="staff_test_type", app_id=default_appid()),
    )
    assert staff_client.get(f"/staff/accounts/events/{event.id}/replay").status_code == 200
    response = post(staff_client, f"/staff/accounts/events/{event.id}/replay")
    assert response.status_code == 303
    assert handled == ["staff_test_type"]
    assert db.session.get(InboxEvent, event.id).outcome == "processed"
    assert "staff.event_replayed" in audit_actions(event.id)


def test_processed_events_are_not_replayed(staff_client):
    event = make_event(make_account().appid, outcome="processed")
    post(staff_client, f"/staff/accounts/events/{event.id}/replay")
    assert "staff.event_replayed" not in audit_actions()


def test_assign_resolves_a_conflict(staff_client):
    account = make_account()
    item = make_attention(account)
    merchant = factories.make_merchant(name="接手商户 Taker")
    page = staff_client.get(f"/staff/accounts/attention/{item.id}?q=Taker").get_data(as_text=True)
    assert "接手商户 Taker" in page
    response = post(staff_client, f"/staff/accounts/attention/{item.id}/assign",
                    {"merchant_id": merchant.id})  # fmt: skip
    assert response.status_code == 303
    assert db.session.get(Authorizer, account.id).merchant_id == merchant.id
    item = db.session.get(AttentionItem, item.id)
    assert item.resolved_at is not None and "assigned" in item.resolution
    assert {"staff.authorizer_assigned", "attention.resolved"} <= set(audit_actions())
    # resolved items are gone from the resolve page
    assert staff_client.get(f"/staff/accounts/attention/{item.id}").status_code == 404


def test_assign_to_unknown_merchant_is_a_form_error(staff_client):
    item = make_attention(make_account())
    response = post(staff_client, f"/staff/accounts/attention/{item.id}/assign",
                    {"merchant_id": 999999})  # fmt: skip
    assert response.status_code == 422
    assert db.session.get(AttentionItem, item.id).resolved_at is None


def test_dismiss(staff_client):
    item = make_attention(make_account())
    response = post(staff_client, f"/staff/accounts/attention/{item.id}/dismiss",
                    {"note": "known test account"})  # fmt: skip
    assert response.status_code == 303
    item = db.session.get(AttentionItem, item.id)
    assert item.resolution == "dismissed: known test account"
    assert "attention.resolved" in audit_actions(item.id)


def test_create_and_revoke_an_api_key(staff_client):
    response = post(
        staff_client,
        "/staff/api-keys",
        {"name": "billing", "scopes": ["tokens:read"], "rate_limit": "60 per minute"},
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    key = db.session.scalar(select(ApiKey))
    assert f"gdk_{key.prefix}_" in html  # the secret, shown once
    again = staff_client.get("/staff/api-keys").get_data(as_text=True)
    assert f"gdk_{key.prefix}_…" in again and html.count("gdk_") > again.count("readonly")
    assert staff_client.get(f"/staff/api-keys/{key.id}/revoke").status_code == 200
    assert post(staff_client, f"/staff/api-keys/{key.id}/revoke").status_code == 303
    db.session.refresh(key)
    assert key.revoked_at is not None
    assert {"api_key.created", "api_key.revoked"} <= set(audit_actions(key.id))


def test_api_key_validation(staff_client):
    response = post(staff_client, "/staff/api-keys", {"name": "x", "rate_limit": "lots"})
    assert response.status_code == 422
    assert db.session.scalar(select(ApiKey)) is None


def test_disable_user_goes_through_a_confirmation(staff_client):
    admin = factories.make_merchant_admin()
    page = staff_client.get(f"/staff/users/{admin.id}/disable").get_data(as_text=True)
    assert admin.email in page
    assert post(staff_client, f"/staff/users/{admin.id}/disable").status_code == 303
    assert db.session.get(User, admin.id).disabled_at is not None
    assert "user.disabled" in audit_actions(admin.id)


def test_staff_cannot_disable_themselves(staff_client, staff):
    assert staff_client.get(f"/staff/users/{staff.id}/disable").status_code == 400


def test_create_merchant_and_invite(staff_client):
    response = post(staff_client, "/staff/merchants", {"name": "新商户 New"})
    assert response.status_code == 303
    merchant_url = response.headers["Location"]
    response = post(staff_client, merchant_url + "/invitations", {"email": "boss@new.example"})
    assert response.status_code == 200 and "/invitations/" in response.get_data(as_text=True)
    assert {"merchant.created", "invitation.created"} <= set(audit_actions())
