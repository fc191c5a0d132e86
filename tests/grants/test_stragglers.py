"""A grant push that arrives after its account was purged (older than the revocation, overtaken
on the way) changes nothing and leaves nothing: the appid is gone from every table.

Found by the convergence test (tests/convergence, divergence D4 in its notes)."""

from sqlalchemy import select

from app.extensions import db
from app.models import Authorizer, InboxEvent, SessionStatus
from tests.convergence.world import PushRelay, tables_mentioning


def _account(flow):
    return flow.sandbox.account(scenario="fresh", type="official_account")


def _nothing_left(flow, appid):
    db.session.rollback()
    db.session.expire_all()
    assert db.session.scalar(select(Authorizer).where(Authorizer.appid == appid)) is None
    outcomes = db.session.scalars(select(InboxEvent.outcome)).all()
    assert set(outcomes) <= {"processed", "ignored"}, outcomes
    assert tables_mentioning(appid) == []
    for delivery in flow.sandbox.deliveries():
        assert delivery["attempts"][-1]["reply"] == "success", delivery["info_type"]


def test_an_update_overtaken_by_the_revocation_leaves_no_trace(flow):
    account = _account(flow)
    session = flow.start([7])
    flow.consent(flow.link(session), account, [7])  # on the phone: only the push tells us
    flow.sandbox.flush()
    assert flow.authorizer(account["appid"]) is not None
    flow.sandbox.set_faults(pushes={"out_of_order": True})
    flow.sandbox.update(account["appid"], [1])  # held ...
    flow.sandbox.clock(advance_seconds=1)
    flow.sandbox.revoke(account["appid"])  # ... and overtaken by the revocation
    flow.sandbox.flush()
    assert [d["info_type"] for d in flow.sandbox.deliveries()][-2:] == [
        "updateauthorized",
        "unauthorized",
    ]
    _nothing_left(flow, account["appid"])


def test_an_authorization_overtaken_by_its_revocation_leaves_no_trace(flow):
    account = _account(flow)
    flow.sandbox.set_faults(pushes={"out_of_order": True})
    session = flow.start([1, 2])
    flow.consent(flow.link(session), account, [1, 2])  # the `authorized` push is held ...
    flow.sandbox.clock(advance_seconds=1)
    flow.sandbox.revoke(account["appid"])  # ... and arrives after the `unauthorized`
    flow.sandbox.flush()
    assert flow.session(session["id"]).status is SessionStatus.FAILED
    _nothing_left(flow, account["appid"])


def test_a_late_push_of_an_authorization_the_redirect_exchanged_is_not_exchanged_again(flow):
    """Revoke, re-authorize (the browser comes back), revoke again, while the network holds
    the pushes: the first `unauthorized` purges (WeChat confirms: revoked by then), and the
    re-authorization's push that follows must not spend a second api_query_auth on its code."""
    account = _account(flow)
    relay = PushRelay(flow.portal.url)
    try:
        flow.sandbox.configure(event_url=relay.url + "/wechat/events")
        session = flow.start([1, 2])
        flow.follow(flow.consent(flow.link(session), account, [1, 2])["redirect_url"])
        flow.sandbox.flush()
        relay.pause()
        flow.sandbox.clock(advance_seconds=1)
        flow.sandbox.revoke(account["appid"])
        flow.sandbox.clock(advance_seconds=1)
        again = flow.start([1, 2])
        flow.follow(flow.consent(flow.link(again), account, [1, 2])["redirect_url"])
        assert flow.session(again["id"]).status is SessionStatus.COMPLETED
        flow.sandbox.clock(advance_seconds=1)
        flow.sandbox.revoke(account["appid"])
        relay.resume()
        flow.sandbox.flush()
    finally:
        relay.close()
    assert [d["info_type"] for d in flow.sandbox.deliveries()][-4:] == [
        "authorized", "unauthorized", "authorized", "unauthorized",
    ]  # fmt: skip
    assert flow.calls("api_query_auth") == 2  # one per authorization
    _nothing_left(flow, account["appid"])
