"""Defect 5 of #11: ids of purged rows are never reused, and an account's staff page shows its own
history only, never a deleted account's."""

from sqlalchemy import func, select

from app.extensions import db
from app.models import AttentionItem, AuditEntry, Authorizer, Grant, GrantChange, WebhookDelivery
from app.models.grants import appid_ref
from app.services import clock
from app.services.console import queries
from tests import factories


def _connect(flow, account, sets=(1, 2)):
    session = flow.start(sets)
    result = flow.consent(flow.link(session), account, list(sets))
    flow.follow(result["redirect_url"])
    flow.sandbox.flush()
    return flow.authorizer(account["appid"])


def _two_accounts(sandbox):
    fresh = [
        a
        for a in sandbox.state()["accounts"]
        if a["scenario"] in ("fresh", "shared") and a["type"] == "official_account"
    ]
    return fresh[0], fresh[1]


def test_a_new_account_after_a_purge_gets_a_new_id_and_none_of_the_old_history(flow, client, auth):
    first, second = _two_accounts(flow.sandbox)
    old = _connect(flow, first)
    old_id, old_grant_id = old.id, old.grant.id
    old_change_ids = {c.id for c in old.grant.changes}
    old_entries = flow.portal.call(
        lambda: db.session.scalar(select(func.count()).where(AuditEntry.target_id == str(old_id)))
    )
    assert old_entries  # the first account has history

    flow.sandbox.revoke(first["appid"])
    flow.sandbox.flush()
    assert flow.authorizer(first["appid"]) is None  # purged

    new = _connect(flow, second)
    assert new.id != old_id and new.id > old_id
    assert new.grant.id != old_grant_id
    assert not old_change_ids & {c.id for c in new.grant.changes}

    staff = factories.make_staff()
    auth.login(staff.email)
    page = client.get(f"/staff/accounts/{new.id}").get_data(as_text=True)
    assert "grant.authorized" in page  # the new account's own history
    assert "authorizer.purged" not in page
    assert page.count("<code>grant.") == 1
    # The deleted account's id leads nowhere.
    assert client.get(f"/staff/accounts/{old_id}").status_code == 404


def test_purged_attention_items_and_webhook_deliveries_keep_their_ids_retired(app):
    ref = appid_ref("wxretired0000001")
    now = clock.now()
    item = AttentionItem(kind="unknown_authorizer", dedupe_key=f"unknown:{ref}",
                         authorizer_appid="wxretired0000001", appid_hash=ref, details={},
                         created_at=now)  # fmt: skip
    delivery = WebhookDelivery(event="grant.revoked", payload={}, appid_hash=ref,
                               status="pending", next_attempt_at=now, created_at=now)  # fmt: skip
    db.session.add_all([item, delivery])
    db.session.commit()
    item_id, delivery_id = item.id, delivery.id
    db.session.delete(item)
    db.session.delete(delivery)
    db.session.commit()
    again = AttentionItem(kind="unknown_authorizer", dedupe_key=f"again:{ref}",
                          authorizer_appid="wxretired0000001", appid_hash=ref, details={},
                          created_at=now)  # fmt: skip
    resent = WebhookDelivery(event="grant.revoked", payload={}, appid_hash=ref,
                             status="pending", next_attempt_at=now, created_at=now)  # fmt: skip
    db.session.add_all([again, resent])
    db.session.commit()
    assert again.id > item_id and resent.id > delivery_id


def test_history_before_a_purge_tombstone_of_the_same_id_is_not_shown(app):
    """A database from before AUTOINCREMENT may already hold a reused id: the staff history of
    the account now carrying it starts after the purge tombstone of that id."""
    merchant = factories.make_merchant()
    authorizer = Authorizer(appid="wxreused00000001", merchant_id=merchant.id,
                            created_at=clock.now())  # fmt: skip
    db.session.add(authorizer)
    db.session.commit()
    target = {"target_type": "authorizer", "target_id": str(authorizer.id)}
    db.session.add_all([
        AuditEntry(action="grant.authorized", actor="system", details={}, **target),
        AuditEntry(action="authorizer.purged", actor="system", details={}, **target),
        AuditEntry(action="grant.reauthorized", actor="system", details={}, **target),
    ])  # fmt: skip
    db.session.commit()
    assert [e.action for e in queries.account_audit(authorizer)] == ["grant.reauthorized"]


def test_ids_are_retired_for_every_purged_table(app):
    for model in (Authorizer, Grant, GrantChange, AttentionItem, WebhookDelivery):
        assert model.__table__.kwargs.get("sqlite_autoincrement") is True, model
