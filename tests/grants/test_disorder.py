"""Custody under disorder (issue #11): late, duplicated and replayed pushes never lose a live
authorization nor keep a revoked one's data. Black-box against the sandbox over HTTP."""

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AttentionItem, AuditEntry, GrantStatus, InboxEvent
from app.services.custody import sweep
from app.services.platform import intake
from app.wechat.events import build_event_xml
from tests.intake.conftest import sealed


def _account(flow):
    return flow.sandbox.account(scenario="fresh", type="official_account")


def _connect(flow, account, sets=(1, 2)):
    session = flow.start(sets)
    result = flow.consent(flow.link(session), account, list(sets))
    flow.follow(result["redirect_url"])
    flow.sandbox.flush()
    return session


def _sandbox_grant(flow, appid):
    for grant in flow.sandbox.state()["authorizations"]:
        if grant["authorizer_appid"] == appid:
            return grant
    return None


def _audit(action):
    db.session.rollback()
    return list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def _assert_held_and_live(flow, account, sets):
    """Grantdesk holds the account as the sandbox does, with a refresh token WeChat accepts."""
    authorizer = flow.authorizer(account["appid"])
    assert authorizer is not None, "the live authorization was deleted"
    assert authorizer.grant.status is GrantStatus.ACTIVE
    assert authorizer.grant.set_ids == list(sets)
    wechat = _sandbox_grant(flow, account["appid"])
    assert wechat["status"] == "active" and wechat["permission_set_ids"] == list(sets)
    assert authorizer.token.refresh_token == wechat["refresh_token"]
    authorizer.token.access_expires_at = None  # due: the sweep refreshes with that token
    db.session.commit()
    assert flow.portal.call(sweep.sweep_tokens).outcomes == {"refreshed": 1}


@pytest.mark.parametrize("seconds_between", [0, 5])
def test_late_unauthorized_keeps_the_newer_authorization(flow, seconds_between):
    """Defect 1: revoke, re-authorize by phone (no browser return), pushes out of order."""
    account = _account(flow)
    _connect(flow, account, [1, 2])
    flow.sandbox.set_faults(pushes={"out_of_order": True})
    flow.sandbox.revoke(account["appid"])  # held until the next push overtakes it
    flow.sandbox.clock(advance_seconds=seconds_between)
    session = flow.start([1, 3])
    flow.consent(flow.link(session), account, [1, 3])  # the phone flow: no redirect followed
    flow.sandbox.flush()
    for info_type in ("authorized", "unauthorized"):
        assert flow.sandbox.deliveries(info_type)[-1]["attempts"][-1]["reply"] == "success"
    _assert_held_and_live(flow, account, [1, 3])
    [kept] = _audit("authorizer.purge_declined")
    # Within one second the push is not older, and WeChat's answer keeps the account.
    expected = {"stale_push"} if seconds_between else {"stale_push", "still_authorized"}
    assert kept.details["reason"] in expected
    assert _audit("authorizer.purged") == []
    assert {e.outcome for e in flow.portal.call(_inbox)} <= {"processed"}


def _inbox():
    return list(db.session.scalars(select(InboxEvent).order_by(InboxEvent.id)))


def test_unauthorized_while_wechat_is_unreachable_waits_then_purges(flow, portal_clock):
    """Never purge on a guess: the push stays due until WeChat confirms the revocation."""
    account = _account(flow)
    _connect(flow, account)
    flow.sandbox.set_faults(endpoints={"api_get_authorizer_info": {"errcode": -1, "times": 3}})
    flow.sandbox.revoke(account["appid"])
    flow.sandbox.flush()
    assert flow.authorizer(account["appid"]) is not None  # not purged on a guess
    [event] = [e for e in flow.portal.call(_inbox) if e.info_type == "unauthorized"]
    assert event.outcome == "failed" and event.next_attempt_at is not None
    portal_clock.advance(3600)
    flow.portal.call(intake.retry_failed_events)
    [event] = [e for e in flow.portal.call(_inbox) if e.info_type == "unauthorized"]
    assert event.outcome == "processed"
    assert flow.authorizer(account["appid"]) is None
    assert len(_audit("authorizer.purged")) == 1


def test_unconfirmed_revocation_opens_an_attention_item_after_the_retry_budget(
    app, flow, portal_clock
):
    """Never keep forever: when the retries run out an alert and an attention item open."""
    app.config["INBOX_MAX_ATTEMPTS"] = 2
    account = _account(flow)
    _connect(flow, account)
    flow.sandbox.set_faults(endpoints={"api_get_authorizer_info": {"errcode": -1}})
    flow.sandbox.revoke(account["appid"])
    flow.sandbox.flush()
    portal_clock.advance(3600)
    flow.portal.call(intake.retry_failed_events)
    db.session.rollback()
    item = db.session.scalar(
        select(AttentionItem).where(AttentionItem.kind == "revocation_unconfirmed")
    )
    assert item is not None and item.authorizer_appid == account["appid"]
    assert flow.authorizer(account["appid"]) is not None  # still nothing deleted


def _appid_in_clear(appid) -> int:
    db.session.rollback()
    return db.session.scalar(
        select(func.count()).select_from(InboxEvent).where(InboxEvent.authorizer_appid == appid)
    )


def test_duplicated_unauthorized_after_the_purge_is_a_duplicate(flow):
    """Defect 2: the copy is recognised after the purge: `success`, one effect, no clear data."""
    account = _account(flow)
    _connect(flow, account)
    flow.sandbox.set_faults(pushes={"duplicate": True})
    flow.sandbox.revoke(account["appid"])
    flow.sandbox.flush()
    copies = flow.sandbox.deliveries("unauthorized")
    assert len(copies) == 2
    assert [d["attempts"][-1]["reply"] for d in copies] == ["success", "success"]
    assert flow.authorizer(account["appid"]) is None
    assert len(_audit("authorizer.purged")) == 1
    unauthorized = [e for e in flow.portal.call(_inbox) if e.info_type == "unauthorized"]
    assert [e.outcome for e in unauthorized] == ["processed"]
    assert {e.outcome for e in flow.portal.call(_inbox)} <= {"processed", "ignored"}
    assert _appid_in_clear(account["appid"]) == 0
    for event in flow.portal.call(_inbox):
        assert account["appid"] not in event.dedupe_key


def test_replayed_signed_unauthorized_after_the_purge_changes_nothing(flow):
    """Defect 2: an old signed request replayed after the purge is answered as a duplicate."""
    account = _account(flow)
    _connect(flow, account)
    flow.sandbox.revoke(account["appid"])
    flow.sandbox.flush()
    [delivery] = flow.sandbox.deliveries("unauthorized")

    def replay():
        body, query = sealed(delivery["inner_xml"], nonce="7654321")
        return flow.portal.http.post(
            f"{flow.portal.url}/wechat/events?{query}",
            data=body.encode(),
            headers={"Content-Type": "text/xml"},
        )

    before = flow.portal.call(lambda: len(_inbox()))
    response = flow.portal.call(replay)
    assert response.status_code == 200 and response.text == "success"
    assert flow.portal.call(lambda: len(_inbox())) == before
    assert len(_audit("authorizer.purged")) == 1
    assert _appid_in_clear(account["appid"]) == 0


def test_unauthorized_as_new_as_the_authorization_asks_wechat_first(flow):
    """Same CreateTime as the applied authorization: not stale, so WeChat decides (it says the
    account is authorized, so nothing is purged)."""
    account = _account(flow)
    _connect(flow, account)
    newest = flow.authorizer(account["appid"]).grant.last_event_time
    assert newest is not None  # the authorized push's CreateTime, noted after the redirect
    inner = build_event_xml(
        "unauthorized",
        {"AppId": flow.sandbox.component_appid, "CreateTime": newest,
         "AuthorizerAppid": account["appid"]},
    )  # fmt: skip

    def post():
        body, query = sealed(inner)
        return flow.portal.http.post(
            f"{flow.portal.url}/wechat/events?{query}", data=body.encode(),
            headers={"Content-Type": "text/xml"},
        )  # fmt: skip

    before = flow.calls("api_get_authorizer_info")
    assert flow.portal.call(post).text == "success"
    assert flow.calls("api_get_authorizer_info") == before + 1
    [kept] = _audit("authorizer.purge_declined")
    assert kept.details["reason"] == "still_authorized"
    _assert_held_and_live(flow, account, [1, 2])


def test_an_older_update_never_overwrites_a_newer_set_list(flow):
    """Two updates in WeChat's security assistant, their pushes delivered newest first: the
    older one is recognised as stale (no code exchange, no change) and the newer list stays."""
    account = _account(flow)
    _connect(flow, account, [1, 2])
    flow.sandbox.set_faults(pushes={"out_of_order": True})
    flow.sandbox.update(account["appid"], [1, 3])
    flow.sandbox.clock(advance_seconds=5)
    flow.sandbox.update(account["appid"], [2, 7])
    exchanges = flow.calls("api_query_auth")
    flow.sandbox.flush()
    authorizer = flow.authorizer(account["appid"])
    assert (
        authorizer.grant.set_ids
        == [2, 7]
        == _sandbox_grant(flow, account["appid"])["permission_set_ids"]
    )
    assert [(c.kind, c.set_ids) for c in authorizer.grant.changes] == [
        ("authorized", [1, 2]),
        ("updated", [2, 7]),
    ]
    assert flow.calls("api_query_auth") == exchanges + 1  # only the newer push's code
    [stale] = _audit("grant.stale_push_ignored")
    assert stale.details["info_type"] == "updateauthorized"
    assert {e.outcome for e in flow.portal.call(_inbox)} <= {"processed"}


def test_a_late_push_after_the_purge_keeps_nothing_in_clear(app, flow):
    """An update pushed before the revocation but delivered after the purge: WeChat has no
    grant any more, so nothing is applied and the push's payload is dropped like the others."""
    account = _account(flow)
    session = flow.start([7])
    flow.consent(flow.link(session), account, [7])  # the phone flow
    flow.sandbox.flush()
    flow.sandbox.set_faults(pushes={"out_of_order": True})
    flow.sandbox.update(account["appid"], [1])
    flow.sandbox.revoke(account["appid"])  # overtakes the update
    flow.sandbox.flush()
    assert flow.authorizer(account["appid"]) is None
    assert _appid_in_clear(account["appid"]) == 0
    assert {e.outcome for e in flow.portal.call(_inbox)} <= {"processed", "ignored"}
    assert len(_audit("authorizer.purged")) == 1


def test_a_push_older_than_the_purging_revocation_is_not_exchanged(flow):
    """The revocation killed the older push's code: no wasted api_query_auth, no WeChat call
    beyond the revocation's own confirmation, nothing left in clear (divergence D5)."""
    account = _account(flow)
    _connect(flow, account, [1, 2])
    flow.sandbox.set_faults(pushes={"out_of_order": True})
    flow.sandbox.update(account["appid"], [1, 3])
    exchanges, reads = flow.calls("api_query_auth"), flow.calls("api_get_authorizer_info")
    flow.sandbox.clock(advance_seconds=5)
    flow.sandbox.revoke(account["appid"])  # overtakes the update
    flow.sandbox.flush()
    assert flow.authorizer(account["appid"]) is None
    assert flow.calls("api_query_auth") == exchanges
    assert flow.calls("api_get_authorizer_info") == reads + 1  # the revocation's confirmation
    assert _appid_in_clear(account["appid"]) == 0
    assert {e.outcome for e in flow.portal.call(_inbox)} <= {"processed", "ignored"}
    [tombstone] = _audit("authorizer.purged")
    assert tombstone.details["event_time"] > 0
