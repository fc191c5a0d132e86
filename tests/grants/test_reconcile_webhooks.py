"""Reconciliation with the authorizer list, and signed webhook notifications."""

import hashlib
import hmac
import json

from sqlalchemy import select

from app.extensions import db
from app.models import AttentionItem, Authorizer, WebhookDelivery
from app.services.authorization import reconcile
from app.services.notify import webhooks
from app.wechat.release import RELEASE_TEST_ACCOUNTS
from tests.grants.fleet import seed_sandbox


def _connect(flow, account, sets=(1, 2)):
    session = flow.start(sets)
    flow.follow(flow.consent(flow.link(session), account, list(sets))["redirect_url"])
    flow.sandbox.flush()


def test_reconciliation_flags_unknown_and_missing(flow):
    account = flow.sandbox.account(scenario="fresh", type="official_account")
    _connect(flow, account)
    ((stranger, _),) = seed_sandbox(flow.sandbox, 1)
    ghost = Authorizer(appid="wxghost0000000001", merchant_id=flow.merchant.id)
    db.session.add(ghost)
    db.session.flush()
    from app.models import Grant

    db.session.add(Grant(authorizer_id=ghost.id, set_ids=[1]))
    db.session.commit()
    counts = flow.portal.call(reconcile.reconcile_authorizers, page_size=2)
    assert counts["unknown"] >= 1 and counts["missing"] == 1
    assert flow.calls("api_get_authorizer_list") >= 2  # paged
    items = {(i.kind, i.authorizer_appid) for i in db.session.scalars(select(AttentionItem))}
    assert ("unknown_authorizer", stranger) in items
    assert ("missing_authorizer", "wxghost0000000001") in items
    assert ("unknown_authorizer", account["appid"]) not in items
    release_accounts = {a.appid for a in RELEASE_TEST_ACCOUNTS}  # seeded as authorized to us
    assert not {appid for _kind, appid in items} & release_accounts
    assert db.session.get(Authorizer, ghost.id) is not None  # never deleted silently
    again = flow.portal.call(reconcile.reconcile_authorizers)
    assert again["missing"] == 1
    assert db.session.scalar(
        select(db.func.count()).select_from(AttentionItem).where(
            AttentionItem.kind == "missing_authorizer")
    ) == 1  # fmt: skip


def test_webhooks_are_signed_retried_and_logged(app, flow, receiver, portal_clock):
    app.config.update(GRANTDESK_WEBHOOK_URL=receiver.url + "/hook", GRANTDESK_WEBHOOK_SECRET="s3")
    receiver.replies.append((500, "busy"))
    account = flow.sandbox.account(scenario="fresh", type="official_account")
    _connect(flow, account)
    assert flow.portal.call(webhooks.deliver_due) == 0  # first attempt: HTTP 500
    delivery = db.session.scalar(select(WebhookDelivery))
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    assert flow.portal.call(webhooks.deliver_due) == 0  # backing off
    portal_clock.advance(31)
    assert flow.portal.call(webhooks.deliver_due) == 1
    request = receiver.requests[-1]
    body = request.body
    expected = hmac.new(b"s3", request.headers["X-Grantdesk-Timestamp"].encode() + b"." + body,
                        hashlib.sha256).hexdigest()  # fmt: skip
    assert request.headers["X-Grantdesk-Signature"] == "sha256=" + expected
    payload = json.loads(body)
    assert payload["event"] == "grant.authorized"
    assert payload["data"]["authorizer_appid"] == account["appid"]
    assert payload["data"]["added"] == [1, 2]
    db.session.expire_all()
    assert db.session.scalar(select(WebhookDelivery)).status == "delivered"
    flow.sandbox.revoke(account["appid"])
    flow.sandbox.flush()
    assert flow.portal.call(webhooks.deliver_due) == 1
    assert json.loads(receiver.requests[-1].body)["event"] == "grant.revoked"
    db.session.expire_all()
    logged = json.dumps([d.payload for d in db.session.scalars(select(WebhookDelivery))])
    assert account["appid"] not in logged  # purged, and the revoked notice scrubbed once sent
