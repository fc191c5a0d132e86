"""Every ordering of WeChat's two signals ends in exactly one grant and one api_query_auth."""

import threading

from app.models import Authorizer, Grant, GrantChange, SessionStatus


def _consented(flow, sets=(1, 2)):
    session = flow.start(sets)
    link = flow.link(session)
    account = flow.sandbox.account(scenario="fresh", type="official_account")
    return session, account, flow.consent(link, account, list(sets))


def _assert_one_grant(flow, session, account, sets=(1, 2), via=None):
    done = flow.session(session["id"])
    assert done.status is SessionStatus.COMPLETED
    assert done.authorizer_appid == account["appid"]
    assert done.granted_set_ids == list(sets)
    if via:
        assert done.completed_via == via
    assert flow.calls("api_query_auth") == 1
    assert flow.count(Authorizer) == 1 and flow.count(Grant) == 1
    authorizer = flow.authorizer(account["appid"])
    assert authorizer.merchant_id == flow.merchant.id
    assert authorizer.nick_name == account["nick_name"]
    assert authorizer.grant.set_ids == list(sets)
    assert [c.kind for c in authorizer.grant.changes] == ["authorized"]
    assert authorizer.token.refresh_token and authorizer.token.access_token
    return authorizer


def test_push_first(flow):
    flow.sandbox.set_faults(pushes={"out_of_order": True})
    session, account, result = _consented(flow)
    flow.sandbox.flush()  # the held push arrives and is processed
    assert flow.session(session["id"]).status is SessionStatus.COMPLETED
    page = flow.follow(result["redirect_url"])
    assert page.status_code == 200 and 'data-state="received"' in page.text
    _assert_one_grant(flow, session, account, via="push")


def test_redirect_first(flow):
    flow.sandbox.set_faults(pushes={"out_of_order": True})
    session, account, result = _consented(flow)
    page = flow.follow(result["redirect_url"])
    assert page.status_code == 200
    assert page.url.startswith(flow.portal.url + "/connect/result/")
    assert flow.session(session["id"]).completed_via == "redirect"
    flow.sandbox.flush()
    _assert_one_grant(flow, session, account, via="redirect")
    assert [d["attempts"][-1]["reply"] for d in flow.sandbox.deliveries("authorized")] == [
        "success"
    ]


def test_both_at_once(flow):
    flow.sandbox.set_faults(
        pushes={"out_of_order": True}, endpoints={"api_query_auth": {"latency": 0.5}}
    )
    session, account, result = _consented(flow)
    barrier = threading.Barrier(2)
    pages = []

    def redirect():
        barrier.wait()
        pages.append(flow.follow(result["redirect_url"]))

    def push():
        barrier.wait()
        flow.sandbox.flush()

    threads = [threading.Thread(target=redirect), threading.Thread(target=push)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert pages[0].status_code == 200
    _assert_one_grant(flow, session, account)


def test_redirect_only(flow):
    flow.sandbox.configure(event_url="http://127.0.0.1:9/wechat/events")  # pushes are lost
    session, account, result = _consented(flow)
    flow.follow(result["redirect_url"])
    _assert_one_grant(flow, session, account, via="redirect")


def test_push_only(flow):
    session, account, _ = _consented(flow)
    flow.sandbox.flush()
    _assert_one_grant(flow, session, account, via="push")
    assert flow.count(GrantChange) == 1
