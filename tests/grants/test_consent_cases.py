"""Partial grants, refusals, mismatches, expiry and reused codes."""

import re

from sqlalchemy import select

from app.extensions import db
from app.models import AttentionItem, Authorizer, Grant, SessionStatus
from app.services.authorization import sessions
from tests import factories

CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def _login(portal, email):
    page = portal.http.get(f"{portal.url}/login").text
    token = CSRF.search(page).group(1)
    data = {"email": email, "password": factories.PASSWORD, "csrf_token": token}
    assert portal.http.post(f"{portal.url}/login", data=data).status_code == 200


def _accounts(sandbox, type="official_account", scenarios=("fresh", "shared")):
    return [
        a for a in sandbox.state()["accounts"] if a["type"] == type and a["scenario"] in scenarios
    ]


def _connect(flow, account, sets=(1, 2), merchant=None):
    session = flow.start(sets, merchant=merchant)
    result = flow.consent(flow.link(session), account, list(sets))
    flow.follow(result["redirect_url"])
    flow.sandbox.flush()
    return session


def test_partial_grant_shows_granted_vs_requested(flow):
    _login(flow.portal, flow.admin.email)
    session = flow.start([1, 2, 3])
    account = flow.sandbox.account(scenario="fresh", type="official_account")
    result = flow.consent(flow.link(session), account, [1, 3])  # the merchant unticked set 2
    page = flow.follow(result["redirect_url"])  # lands on the merchant's own session page
    assert page.url.endswith(f"/merchant/sessions/{session['public_id']}")
    assert 'data-state="completed"' in page.text
    assert len(re.findall(r'<tr class="set-missing">', page.text)) == 1  # set 2 only
    done = flow.session(session["id"])
    assert done.requested_set_ids == [1, 2, 3] and done.granted_set_ids == [1, 3]
    assert flow.authorizer(account["appid"]).grant.set_ids == [1, 3]


def test_result_page_polls_while_pending_and_stops(flow):
    session = flow.start()
    url = f"{flow.portal.url}/connect/result/{session['public_id']}"
    page = flow.portal.http.get(url)
    assert 'data-state="pending"' in page.text and 'hx-trigger="every 2s"' in page.text
    fragment = flow.portal.http.get(
        url, headers={"HX-Request": "true", "HX-Target": "session_status"}
    )
    assert fragment.text.lstrip().startswith('<section id="session_status"')
    account = flow.sandbox.account(scenario="fresh", type="official_account")
    flow.consent(flow.link(session), account, [1])
    flow.sandbox.flush()
    done = flow.portal.http.get(url, headers={"HX-Request": "true", "HX-Target": "session_status"})
    assert done.status_code == 286 and "hx-trigger" not in done.text


def test_exclusive_set_refused(flow):
    account = flow.sandbox.account(scenario="exclusive_elsewhere")
    session = flow.start([1, 4])
    refused = flow.consent(flow.link(session), account, [1, 4], expect=400)
    assert refused["error"] == "exclusive_held"
    flow.sandbox.flush()
    assert flow.session(session["id"]).status is SessionStatus.OPEN
    assert flow.count(Authorizer) == 0 and flow.calls("api_query_auth") == 0


def test_sixteenth_provider_refused(flow):
    account = flow.sandbox.account(scenario="provider_limit")
    session = flow.start([17], auth_type=2)
    refused = flow.consent(flow.link(session), account, [17], expect=400)
    assert refused["error"] == "provider_limit"
    assert flow.count(Authorizer) == 0 and flow.calls("api_query_auth") == 0


def test_wrong_account_for_biz_appid_is_a_mismatch(flow):
    first, second = _accounts(flow.sandbox)[:2]
    _connect(flow, first, [1, 2])
    session = flow.start([1, 2, 3], biz_appid=first["appid"])
    result = flow.consent(flow.link(session), second, [1, 2])
    page = flow.follow(result["redirect_url"])
    flow.sandbox.flush()
    assert 'data-state="mismatch"' in page.text  # the phone user learns staff will follow up
    done = flow.session(session["id"])
    assert done.status is SessionStatus.MISMATCH and done.failure_reason == "wrong_account"
    assert flow.authorizer(first["appid"]).grant.set_ids == [1, 2]  # untouched
    stray = flow.authorizer(second["appid"])
    assert stray.merchant_id is None and stray.token.refresh_token  # held, not assigned
    items = db.session.scalars(select(AttentionItem)).all()
    assert [(i.kind, i.session_id) for i in items] == [("session_mismatch", session["id"])]


def test_account_bound_to_another_merchant_is_not_reassigned(flow):
    account = flow.sandbox.account(scenario="fresh", type="official_account")
    _connect(flow, account)
    other = factories.make_merchant()
    session = flow.start([1, 2], merchant=other)
    result = flow.consent(flow.link(session), account, [1, 2])
    flow.follow(result["redirect_url"])
    flow.sandbox.flush()
    done = flow.session(session["id"])
    assert done.status is SessionStatus.MISMATCH
    assert done.failure_reason == "bound_to_other_merchant"
    assert flow.authorizer(account["appid"]).merchant_id == flow.merchant.id
    assert flow.count(Grant) == 1
    item = db.session.scalar(select(AttentionItem))
    assert item.kind == "session_mismatch" and item.merchant_id == other.id


def test_expired_pre_auth_code_gets_replaced(flow, portal_clock):
    session = flow.start()
    old = flow.link(session)
    assert flow.link(session).pre_auth_code != old.pre_auth_code  # a new code every view
    flow.sandbox.clock(advance_seconds=601)
    portal_clock.advance(601)
    account = flow.sandbox.account(scenario="fresh", type="official_account")
    assert flow.consent(old, account, [1], expect=400)["error"] == "pre_auth_code_invalid"
    fresh = flow.link(session)
    assert fresh.pre_auth_code != old.pre_auth_code
    assert flow.calls("api_create_preauthcode") == 3
    flow.follow(flow.consent(fresh, account, [1])["redirect_url"])
    assert flow.session(session["id"]).status is SessionStatus.COMPLETED


def test_expired_session(flow, portal_clock):
    session = flow.start()
    flow.link(session)
    portal_clock.advance(25 * 3600)
    gone = flow.portal.http.get(f"{flow.portal.url}/connect/{session['token']}")
    assert gone.status_code == 410 and 'id="pc-link"' not in gone.text
    assert flow.session(session["id"]).status is SessionStatus.EXPIRED
    assert flow.calls("api_create_preauthcode") == 1
    assert flow.portal.http.get(f"{flow.portal.url}/connect/nope").status_code == 404


def test_expire_sessions_job(flow, portal_clock):
    session = flow.start()
    flow.link(session)
    portal_clock.advance(24 * 3600 + 1)
    assert flow.portal.call(sessions.expire_sessions) == 1
    assert flow.session(session["id"]).status is SessionStatus.EXPIRED


def test_reused_code_is_not_exchanged_twice(flow):
    flow.sandbox.set_faults(pushes={"duplicate": True})
    session = flow.start()
    account = flow.sandbox.account(scenario="fresh", type="official_account")
    result = flow.consent(flow.link(session), account, [1, 2])
    flow.sandbox.flush()
    for _ in range(2):
        assert flow.follow(result["redirect_url"]).status_code == 200
    assert flow.calls("api_query_auth") == 1
    assert flow.session(session["id"]).status is SessionStatus.COMPLETED
    closed = flow.portal.http.get(f"{flow.portal.url}/connect/{session['token']}")
    assert closed.status_code == 410 and 'id="pc-link"' not in closed.text


def test_redirect_with_a_foreign_code_fails_the_session(flow):
    session = flow.start()
    flow.link(session)
    base = f"{flow.portal.url}/wechat/authorized"
    bad = f"{base}?session={session['public_id']}&auth_code=x&expires_in=3600"
    page = flow.follow(bad)
    assert 'data-state="failed"' in page.text or 'data-state="received"' in page.text
    assert flow.session(session["id"]).status is SessionStatus.FAILED
    assert flow.follow(f"{base}?session=zz&auth_code=x").status_code == 404
