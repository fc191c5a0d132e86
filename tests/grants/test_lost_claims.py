"""No lost claims (issue #11, defect 3): whatever the interleaving of the browser redirect, the
`authorized` push, failing code exchanges and retry jobs, the end state is exactly one grant and
one successful api_query_auth. Seeded schedules over the real portal and sandbox over HTTP.

`GRANTDESK_CLAIM_SCHEDULES=200 pytest tests/grants/test_lost_claims.py` runs more schedules.
"""

import os
import random
import threading
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuthorizationSession, Authorizer, Grant, InboxEvent, SessionStatus
from app.services.platform import intake

SCHEDULES = int(os.environ.get("GRANTDESK_CLAIM_SCHEDULES", "8"))
SETS = [1, 2]


@dataclass(frozen=True)
class Schedule:
    """One interleaving: how often and how slowly api_query_auth fails, and who goes when."""

    seed: int
    failures: int  # api_query_auth answers -1 this many times (the client tries 3 times a call)
    latency: float  # seconds every api_query_auth call takes while failing
    redirect: bool  # False: the phone flow, no browser comes back
    order: str  # push_first | redirect_holds_claim | together
    retries_between: int  # retry-job runs before the late signal

    @classmethod
    def from_seed(cls, seed: int) -> "Schedule":
        rng = random.Random(seed)
        redirect = rng.random() < 0.8
        orders = ["push_first", "redirect_holds_claim", "together"] if redirect else ["push"]
        return cls(
            seed=seed,
            failures=rng.randint(0, 4),
            latency=rng.choice([0.0, 0.1, 0.3]),
            redirect=redirect,
            order=rng.choice(orders),
            retries_between=rng.randint(0, 2),
        )


def _session_row(session_id):
    row = db.session.get(AuthorizationSession, session_id)
    return row.status, row.exchanging_at


def _run_retry_job(portal, portal_clock):
    portal_clock.advance(3700)  # past any backoff and any claim a crashed caller left
    return portal.call(intake.retry_failed_events)


def _due_or_stuck():
    return db.session.scalar(
        select(func.count())
        .select_from(InboxEvent)
        .where(InboxEvent.outcome.not_in(("processed", "ignored")))
    )


def _play(flow, portal_clock, schedule: Schedule) -> dict:
    sandbox, portal = flow.sandbox, flow.portal
    faults = {"latency": schedule.latency}
    if schedule.failures:
        faults.update(errcode=-1, times=schedule.failures)
    sandbox.set_faults(pushes={"out_of_order": True}, endpoints={"api_query_auth": faults})
    session = flow.start(SETS)
    account = sandbox.account(scenario="fresh", type="official_account")
    result = flow.consent(flow.link(session), account, SETS)  # the push is held
    threads = []

    def in_thread(fn):
        thread = threading.Thread(target=fn)
        thread.start()
        threads.append(thread)

    def redirect():
        flow.follow(result["redirect_url"])

    if schedule.order == "push_first":
        sandbox.flush()
        for _ in range(schedule.retries_between):
            _run_retry_job(portal, portal_clock)
        redirect()
    elif schedule.order == "redirect_holds_claim":
        in_thread(redirect)
        # The push is released only once the redirect holds the claim (or has settled).
        portal.wait_for(lambda: _session_row(session["id"]) != (SessionStatus.OPEN, None))
        sandbox.flush()
    elif schedule.order == "together":
        barrier = threading.Barrier(2)
        in_thread(lambda: (barrier.wait(), redirect()))
        in_thread(lambda: (barrier.wait(), sandbox.flush()))
    else:  # the phone flow: only the push
        sandbox.flush()
    for thread in threads:
        thread.join(60)
    sandbox.set_faults(clear=True)
    sandbox.flush()
    for _ in range(6):  # quiescence: run the retry job until nothing is due
        if not portal.call(_due_or_stuck):
            break
        _run_retry_job(portal, portal_clock)
    return {"session": session, "account": account}


def _assert_one_grant(flow, schedule: Schedule, played: dict):
    session, account = played["session"], played["account"]
    assert flow.session(session["id"]).status is SessionStatus.COMPLETED, schedule
    assert flow.count(Authorizer) == 1 and flow.count(Grant) == 1, schedule
    authorizer = flow.authorizer(account["appid"])
    assert authorizer.merchant_id == flow.merchant.id
    assert authorizer.grant.set_ids == SETS
    assert [c.kind for c in authorizer.grant.changes] == ["authorized"]
    wechat = next(
        g
        for g in flow.sandbox.state()["authorizations"]
        if g["authorizer_appid"] == account["appid"]
    )
    assert authorizer.token.refresh_token == wechat["refresh_token"], schedule
    # Every failed call consumed one fault; then exactly one exchange succeeded.
    assert flow.calls("api_query_auth") == schedule.failures + 1, schedule
    assert flow.portal.call(_due_or_stuck) == 0, schedule


@pytest.mark.parametrize("seed", range(SCHEDULES))
def test_every_interleaving_ends_in_one_grant(flow, portal_clock, seed):
    schedule = Schedule.from_seed(seed)
    print(f"schedule seed={seed}: {schedule}")
    played = _play(flow, portal_clock, schedule)
    _assert_one_grant(flow, schedule, played)


def test_push_during_a_failing_redirect_exchange_is_not_lost(flow, portal_clock):
    """The issue's reproduction: hold the push, make api_query_auth answer -1 three times
    slowly, follow the redirect, release the push while the redirect holds the claim."""
    schedule = Schedule(
        seed=-1,
        failures=3,
        latency=0.8,
        redirect=True,
        order="redirect_holds_claim",
        retries_between=0,
    )
    played = _play(flow, portal_clock, schedule)
    _assert_one_grant(flow, schedule, played)


def test_a_spent_code_and_a_wechat_outage_leave_the_push_due(flow, portal_clock):
    """A crashed caller spent the code; WeChat then fails to answer api_get_authorizer_info.
    The push is not given up as "code invalid": it stays due and the retry job stores the grant."""
    flow.sandbox.set_faults(pushes={"out_of_order": True})
    session = flow.start(SETS)
    account = flow.sandbox.account(scenario="fresh", type="official_account")
    result = flow.consent(flow.link(session), account, SETS)
    token = flow.sandbox.component_token()
    body = {
        "component_appid": flow.sandbox.component_appid,
        "authorization_code": result["auth_code"],
    }
    assert flow.sandbox.wechat("component/api_query_auth", body, token=token)["authorization_info"]
    flow.sandbox.set_faults(endpoints={"api_get_authorizer_info": {"errcode": -1, "times": 3}})
    flow.sandbox.flush()
    assert flow.session(session["id"]).status is SessionStatus.OPEN
    assert flow.count(Authorizer) == 0
    _run_retry_job(flow.portal, portal_clock)
    assert flow.session(session["id"]).status is SessionStatus.COMPLETED
    authorizer = flow.authorizer(account["appid"])
    assert authorizer.merchant_id == flow.merchant.id and authorizer.grant.set_ids == SETS
    assert flow.portal.call(_due_or_stuck) == 0


def test_the_next_retry_run_finishes_what_the_failing_redirect_left(flow):
    """Black-box: the push gave up waiting for the redirect's claim; once the redirect has
    failed, the very next run of the retry job (no waiting for a backoff) stores the grant."""
    flow.sandbox.set_faults(
        pushes={"out_of_order": True},
        endpoints={"api_query_auth": {"errcode": -1, "times": 3, "latency": 1.0}},
    )
    session = flow.start(SETS)
    account = flow.sandbox.account(scenario="fresh", type="official_account")
    result = flow.consent(flow.link(session), account, SETS)
    redirect = threading.Thread(target=flow.follow, args=(result["redirect_url"],))
    redirect.start()
    flow.portal.wait_for(lambda: _session_row(session["id"]) != (SessionStatus.OPEN, None))
    flow.sandbox.flush()
    redirect.join(60)
    flow.portal.call(intake.retry_failed_events)
    assert flow.session(session["id"]).status is SessionStatus.COMPLETED
    assert flow.count(Authorizer) == 1
    assert flow.calls("api_query_auth") == 4
    assert flow.portal.call(_due_or_stuck) == 0
