"""Defect 4 of #11: every view of /connect/<token> shows a pre_auth_code no earlier view showed,
the sandbox burns a code when a WeChat user scans it, and views of one link are rate limited."""

import html
import re

from app.wechat.links import parse_authorization_url

MOBILE_LINK = re.compile(r'id="mobile-link" href="([^"]+)"')
BIND_PAGE = "/wxaopen/safe/bindcomponent"


def _scan(flow, link, wechat_user):
    """A WeChat user opens the link's authorization page on the phone (the scan)."""
    params = {
        "action": "bindcomponent",
        "no_scan": "1",
        "component_appid": link.component_appid,
        "pre_auth_code": link.pre_auth_code,
        "redirect_uri": link.redirect_uri,
        "wechat_user": wechat_user,
    }
    return flow.sandbox.http.get(f"{flow.sandbox.url}{BIND_PAGE}", params=params)


def test_every_view_shows_a_code_no_earlier_view_showed(flow):
    session = flow.start()
    codes = [flow.link(session).pre_auth_code for _ in range(4)]
    assert len(set(codes)) == 4
    assert flow.calls("api_create_preauthcode") == 4
    page = flow.portal.http.get(f"{flow.portal.url}/connect/{session['token']}").text
    mobile = parse_authorization_url(html.unescape(MOBILE_LINK.search(page).group(1)))
    pc = flow.link(session)
    assert mobile.pre_auth_code not in codes and pc.pre_auth_code not in codes + [
        mobile.pre_auth_code
    ]


def test_a_reload_after_someone_scanned_gives_a_code_that_still_works(flow):
    session = flow.start()
    account = flow.sandbox.account(scenario="fresh", type="official_account")
    stranger = next(
        u["id"] for u in flow.sandbox.state()["wechat_users"] if u["id"] != account["admin"]
    )
    scanned = flow.link(session)
    assert _scan(flow, scanned, stranger).status_code == 200  # someone else scanned: burned

    reloaded = flow.link(session)
    assert reloaded.pre_auth_code != scanned.pre_auth_code
    refused = _scan(flow, scanned, account["admin"])
    assert refused.status_code == 400 and "已被扫码使用" in refused.text  # WeChat's page is zh
    flow.consent(scanned, account, [1, 2], expect=400)

    result = flow.consent(reloaded, account, [1, 2])
    flow.follow(result["redirect_url"])
    flow.sandbox.flush()
    assert flow.authorizer(account["appid"]).grant.set_ids == [1, 2]
    assert flow.calls("api_query_auth") == 1


def test_views_of_one_link_are_limited_and_spend_no_quota_past_the_limit(app, flow):
    app.config["CONNECT_LINK_RATE_LIMIT"] = "3 per minute"
    session, other = flow.start(), flow.start()
    for _ in range(3):
        flow.link(session)
    limited = flow.portal.http.get(f"{flow.portal.url}/connect/{session['token']}")
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 61
    assert 'id="rate-limited"' in limited.text and 'id="pc-link"' not in limited.text
    assert "秒后重试" in limited.text  # the page says when to come back
    assert flow.calls("api_create_preauthcode") == 3  # the limited view minted nothing
    assert flow.link(other).pre_auth_code  # another link has its own allowance
