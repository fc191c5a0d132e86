"""Issue #11, divergences D7 and D8 of the convergence test, replayed deterministically.

D7: a push's exchange result, delayed in `_apply`, must not be written over a newer grant that a
redirect stored meanwhile. D8: a redirect whose exchange fails transiently, for an update that
WeChat sends no push for (nothing changed), must still complete through the retry job.
"""

import contextlib
import threading
import time

from sqlalchemy import func, select, text

from app.extensions import db
from app.merchant import queries
from app.models import AuthorizationSession, Authorizer, InboxEvent, SessionStatus
from app.services.authorization import sessions
from app.services.platform import intake
from app.services.platform.platforms import wechat_client


def _connect(flow, account, sets):
    session = flow.start(sets)
    result = flow.consent(flow.link(session), account, list(sets))
    flow.follow(result["redirect_url"])
    flow.sandbox.flush()
    assert flow.session(session["id"]).status is SessionStatus.COMPLETED


def _update_session(flow, appid, sets):
    def run():
        authorizer = db.session.scalar(select(Authorizer).where(Authorizer.appid == appid))
        session = sessions.start_update_session(authorizer, sets)
        return {"id": session.id, "token": session.link_token, "public_id": session.public_id}

    return flow.portal.call(run)


def _wechat_grant(flow, appid) -> dict:
    return next(g for g in flow.sandbox.state()["authorizations"] if g["authorizer_appid"] == appid)


def _unsettled_events():
    return db.session.scalar(
        select(func.count())
        .select_from(InboxEvent)
        .where(InboxEvent.outcome.not_in(("processed", "ignored")))
    )


@contextlib.contextmanager
def _retry_backoff_held(flow):
    """Hold the portal's WeChat retry backoff until the block ends: a push whose call failed
    waits, inside `_apply`, for exactly as long as the test needs, however slow the machine.
    Yields an event set once a retry is waiting."""
    client = flow.portal.call(wechat_client)
    waiting, release = threading.Event(), threading.Event()

    def held(_seconds):
        waiting.set()
        assert release.wait(60), "the held retry was never released"

    client._sleep = held
    try:
        yield waiting
    finally:
        release.set()
        client._sleep = time.sleep


@contextlib.contextmanager
def _a_push_held_while_the_merchant_consents(flow):
    """The security assistant's push (sets [1, 3]) exchanged its code; its
    api_get_authorizer_info failed once and its retry waits inside `_apply` while the merchant
    consents an update link with [1, 2, 4] and the redirect stores it. Yields (appid, update
    session) with the push still held; the push goes on when the block ends."""
    account = flow.sandbox.account(scenario="fresh", type="official_account")
    appid = account["appid"]
    _connect(flow, account, [1, 2])
    session = _update_session(flow, appid, [1, 2, 4])
    link = flow.link(session)
    flow.sandbox.set_faults(endpoints={"api_get_authorizer_info": {"errcode": -1, "times": 1}})
    flow.sandbox.update(appid, [1, 3])
    with _retry_backoff_held(flow) as push_waits:
        pushes = threading.Thread(target=flow.sandbox.flush)
        pushes.start()
        assert push_waits.wait(30)
        result = flow.consent(link, account, [1, 2, 4])
        flow.follow(result["redirect_url"])
        yield appid, session
    pushes.join(60)
    assert not pushes.is_alive()


def test_a_delayed_push_result_is_not_written_over_a_newer_redirect(flow):
    """D7: the push's older result must not win over the grant the redirect stored meanwhile."""
    with _a_push_held_while_the_merchant_consents(flow) as (appid, session):
        pass
    flow.sandbox.flush()

    wechat = _wechat_grant(flow, appid)
    assert sorted(wechat["permission_set_ids"]) == [1, 2, 4]
    authorizer = flow.authorizer(appid)
    assert authorizer.grant.set_ids == [1, 2, 4]
    assert authorizer.token.refresh_token == wechat["refresh_token"]
    assert flow.session(session["id"]).status is SessionStatus.COMPLETED
    assert flow.portal.call(_unsettled_events) == 0


def test_an_unpushed_update_whose_redirect_exchange_fails_completes_on_retry(flow):
    """D8: an update consented without changes (WeChat sends no push); the redirect's
    api_query_auth answers a body that is not JSON. The merchant is not told it worked; the
    kept code (encrypted) is exchanged by the next inbox retry run, exactly once."""
    account = flow.sandbox.account(scenario="fresh", type="official_account")
    appid = account["appid"]
    _connect(flow, account, [1, 2])
    session = _update_session(flow, appid, [1, 2])
    result = flow.consent(flow.link(session), account, [1, 2])
    assert result["info_type"] is None  # nothing changed: no push
    exchanges = flow.calls("api_query_auth")
    flow.sandbox.set_faults(endpoints={"api_query_auth": {"non_json": True, "times": 1}})
    page = flow.follow(result["redirect_url"])
    assert page.status_code == 200
    assert 'data-state="pending"' in page.text and 'data-state="received"' not in page.text
    assert flow.session(session["id"]).status is SessionStatus.OPEN

    def merchant_state():
        return queries.session_state(db.session.get(AuthorizationSession, session["id"]))

    assert flow.portal.call(merchant_state) == "finishing"  # not "waiting", not "completed"

    def stored_code():
        return db.session.execute(
            text("SELECT retry_auth_code FROM authorization_sessions WHERE id = :id"),
            {"id": session["id"]},
        ).scalar()

    stored = flow.portal.call(stored_code)
    assert stored and result["auth_code"] not in stored  # kept, but never in clear

    flow.portal.call(intake.retry_failed_events)
    done = flow.session(session["id"])
    assert done.status is SessionStatus.COMPLETED and done.completed_via == "redirect"
    assert flow.portal.call(stored_code) is None
    assert [c.kind for c in flow.changes(appid)] == ["authorized", "confirmed"]
    assert flow.calls("api_query_auth") == exchanges + 1 + 1  # one failed call, one success
    assert flow.authorizer(appid).token.refresh_token == _wechat_grant(flow, appid)["refresh_token"]
    flow.portal.call(intake.retry_failed_events)  # nothing left to do: no second exchange
    assert flow.calls("api_query_auth") == exchanges + 1 + 1


def test_a_delayed_push_result_waits_for_wechat_when_the_reread_fails(flow, portal_clock):
    """D7 with WeChat unreachable for the re-read: the push's possibly older result is not
    applied on a guess; the push stays due and the retry job settles on WeChat's grant."""
    with _a_push_held_while_the_merchant_consents(flow) as (appid, _):
        assert flow.authorizer(appid).grant.set_ids == [1, 2, 4]
        # WeChat stops answering before the push's exchange result reaches the database.
        flow.sandbox.set_faults(
            endpoints={"api_get_authorizer_info": {"errcode": -1, "times": 100}}
        )
    assert flow.authorizer(appid).grant.set_ids == [1, 2, 4]
    assert flow.portal.call(_unsettled_events) == 1  # the security assistant's push stays due

    flow.sandbox.set_faults(clear=True)
    flow.sandbox.flush()
    portal_clock.advance(3700)
    flow.portal.call(intake.retry_failed_events)
    wechat = _wechat_grant(flow, appid)
    authorizer = flow.authorizer(appid)
    assert authorizer.grant.set_ids == sorted(wechat["permission_set_ids"]) == [1, 2, 4]
    assert authorizer.token.refresh_token == wechat["refresh_token"]
    assert flow.portal.call(_unsettled_events) == 0
