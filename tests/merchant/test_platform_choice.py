"""Accounts per platform (#16), the merchant's side: with several platforms open to a merchant
the wizard's first step asks which one (`platform`, carried to the consent POST like `type` and
`sets`), the session opens on it and its WeChat link names it; with one, nothing changes."""

import re

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEntry, AuthorizationSession
from app.services.authorization import sessions
from app.services.platform import platforms
from app.wechat.links import parse_authorization_url
from tests.conftest import csrf_token
from tests.merchant.conftest import make_account

B_APPID = "wx5b7c9d1e3f5a7b9c"
B_KEY = "bcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH"
PLATFORM_INPUT = re.compile(r'<input[^>]*name="platform"[^>]*>')


def html(response) -> str:
    return response.get_data(as_text=True)


def add_b(name="Mini Program studio", purpose="Runs your mini program's shop."):
    row = platforms.add(
        component_appid=B_APPID, appsecret="platformbsecret0123456789", token="platformbtoken",
        encoding_aes_key=B_KEY, name=name, purpose=purpose,
    )  # fmt: skip
    db.session.commit()
    return row


def sessions_count() -> int:
    return db.session.scalar(select(func.count(AuthorizationSession.id)))


def consent(client, *, platform=None, account_type="official_account", sets=("1", "2")):
    """Submit step 3 as a browser would (the CSRF token from the page itself)."""
    query = f"type={account_type}" + "".join(f"&sets={i}" for i in sets)
    if platform:
        query += f"&platform={platform}"
    data = {
        "csrf_token": csrf_token(client, f"/merchant/connect/consent?{query}"),
        "type": account_type, "sets": list(sets), "agree": "y",
    }  # fmt: skip
    if platform is not None:
        data["platform"] = platform
    return client.post("/merchant/connect/consent", data=data)


@pytest.fixture
def two(app):
    """The default platform (released) and platform B (testing, as added)."""
    default = platforms.get(platforms.default_appid()) or platforms.default_row()
    platforms.record_release(default, released=True)
    db.session.commit()
    return {"a": platforms.default_appid(), "b": add_b().component_appid}


# --- one platform: nothing changes ---


def test_with_one_platform_the_wizard_asks_nothing_new(logged_in, admin):
    for path in (
        "/merchant/connect",
        "/merchant/connect/permissions?type=official_account",
        "/merchant/connect/consent?type=official_account&sets=1",
    ):
        page = html(logged_in.get(path))
        assert not PLATFORM_INPUT.search(page), path
        assert 'id="testing-notice"' not in page and "Platform:" not in page
    response = consent(logged_in)
    assert response.status_code == 303
    session = db.session.scalar(select(AuthorizationSession))
    assert session.component_appid == platforms.default_appid()


def test_with_one_platform_a_tampered_platform_is_refused(logged_in):
    response = consent(logged_in, platform=B_APPID)
    assert response.status_code == 422
    assert "Choose one of the platforms listed." in html(response)
    assert sessions_count() == 0


# --- two platforms ---


def test_the_first_step_lists_both_platforms_with_name_and_purpose(logged_in, two):
    page = html(logged_in.get("/merchant/connect"))
    assert 'id="platform-choice"' in page
    values = re.findall(r'name="platform" value="([^"]+)"', page)
    assert values == [two["a"], two["b"]]  # the default first
    assert "Mini Program studio" in page and "Runs your mini program&#39;s shop." in page
    # B is still being tested: said on its card, before anything is scanned.
    assert "Still being tested" in page


def test_a_choice_is_needed_and_errors_keep_the_first_step(logged_in, two):
    response = logged_in.get("/merchant/connect/permissions?type=official_account")
    assert response.status_code == 422 and "Choose the platform." in html(response)
    assert 'id="platform-choice"' in html(response)


def test_the_choice_is_carried_to_consent_and_opens_the_session_on_it(logged_in, admin, two):
    step2 = html(
        logged_in.get(f"/merchant/connect/permissions?type=official_account&platform={B_APPID}")
    )
    assert f'<input type="hidden" name="platform" value="{B_APPID}">' in step2
    assert "Platform: Mini Program studio" in step2
    assert f"platform={B_APPID}" in step2  # the Back link keeps it too
    step3 = html(
        logged_in.get(f"/merchant/connect/consent?type=official_account&sets=1&platform={B_APPID}")
    )
    assert f'<input type="hidden" name="platform" value="{B_APPID}">' in step3

    response = consent(logged_in, platform=B_APPID)
    assert response.status_code == 303
    session = db.session.scalar(select(AuthorizationSession))
    assert session.component_appid == B_APPID and session.merchant_id == admin.merchant_id
    started = db.session.scalar(
        select(AuditEntry).where(AuditEntry.action == "authorization_session.started")
    )
    assert started.details.get("component_appid") == B_APPID


def test_choosing_the_default_platform_opens_the_session_there(logged_in, two):
    assert consent(logged_in, platform=two["a"]).status_code == 303
    assert db.session.scalar(select(AuthorizationSession.component_appid)) == two["a"]


@pytest.mark.parametrize("value", ["", "wxnotaplatform00", "<script>", "wx5b7c9d1e3f5a7b9c "])
def test_a_missing_or_tampered_platform_is_refused_and_nothing_is_created(logged_in, two, value):
    response = consent(logged_in, platform=value)
    assert response.status_code == 422
    page = html(response)
    assert "Choose the platform." in page or "Choose one of the platforms listed." in page
    assert 'id="platform-choice"' in page  # back to the first step, the choice offered again
    assert sessions_count() == 0


def test_a_platform_the_merchant_may_not_use_is_refused(logged_in, admin, two, staff):
    platforms.set_merchant_platforms(admin.merchant, [two["a"]], actor=staff)
    db.session.commit()
    response = consent(logged_in, platform=two["b"])
    assert response.status_code == 422 and "Choose one of the platforms listed." in html(response)
    assert sessions_count() == 0


def test_a_retired_platform_is_no_longer_offered(logged_in, two):
    platforms.set_status(platforms.get(two["b"]), "retired")
    db.session.commit()
    assert not PLATFORM_INPUT.search(html(logged_in.get("/merchant/connect")))
    assert consent(logged_in, platform=two["b"]).status_code == 422
    assert sessions_count() == 0


def test_a_merchant_restricted_to_one_platform_gets_no_choice(logged_in, admin, two, staff):
    platforms.set_merchant_platforms(admin.merchant, [two["b"]], actor=staff)
    db.session.commit()
    page = html(logged_in.get("/merchant/connect"))
    assert not PLATFORM_INPUT.search(page)
    # The one platform is still in testing: the merchant is told before choosing anything.
    assert 'id="testing-notice"' in page
    response = consent(logged_in)
    assert response.status_code == 303
    assert db.session.scalar(select(AuthorizationSession.component_appid)) == two["b"]


def test_the_testing_notice_is_shown_for_a_testing_platform_only(logged_in, two):
    steps = (
        "/merchant/connect/permissions?type=official_account&platform={p}",
        "/merchant/connect/consent?type=official_account&sets=1&platform={p}",
    )
    for step in steps:
        assert 'id="testing-notice"' in html(logged_in.get(step.format(p=two["b"])))
        assert 'id="testing-notice"' not in html(logged_in.get(step.format(p=two["a"])))
    consent(logged_in, platform=two["b"])
    session = db.session.scalar(select(AuthorizationSession))
    page = html(logged_in.get(f"/merchant/sessions/{session.public_id}"))
    assert 'id="testing-notice"' in page and "only the accounts on its test list" in page
    assert "Platform: Mini Program studio" in page

    platforms.record_release(platforms.get(two["b"]), released=True)
    db.session.commit()
    page = html(logged_in.get(f"/merchant/sessions/{session.public_id}"))
    assert 'id="testing-notice"' not in page


def test_one_platform_in_testing_by_default_shows_no_notice(logged_in):
    # A one-platform deployment never recorded its release: nothing new is said.
    page = html(logged_in.get("/merchant/connect/permissions?type=official_account"))
    assert 'id="testing-notice"' not in page


def test_pages_name_the_platform_of_each_account(logged_in, admin, two):
    with platforms.using(two["b"]):
        on_b = make_account(admin.merchant, nick_name="Studio shop")
    on_a = make_account(admin.merchant, nick_name="Main shop")
    listing = html(logged_in.get("/merchant/"))
    assert "Platform: Mini Program studio" in listing
    assert "Platform: Mini Program studio" in html(logged_in.get(f"/merchant/accounts/{on_b.id}"))
    assert on_a.component_appid == two["a"]
    assert f"Platform: {platforms.get(two['a']).name}" in html(
        logged_in.get(f"/merchant/accounts/{on_a.id}")
    )


def test_one_platform_pages_name_no_platform(logged_in, admin):
    account = make_account(admin.merchant)
    assert "Platform:" not in html(logged_in.get("/merchant/"))
    assert "Platform:" not in html(logged_in.get(f"/merchant/accounts/{account.id}"))


def test_a_sessions_account_is_the_one_on_its_platform(admin, two):
    from app.merchant import queries

    with platforms.using(two["b"]):
        on_b = make_account(admin.merchant)
    on_a = sessions.start_session(admin.merchant, [1], component_appid=two["a"])
    on_a.authorizer_appid = on_b.appid
    session_b = sessions.start_session(admin.merchant, [1], component_appid=two["b"])
    session_b.authorizer_appid = on_b.appid
    db.session.commit()
    assert queries.session_account(on_a) is None  # the appid is held on B, not on A
    assert queries.session_account(session_b) == on_b


# --- the WeChat link names the chosen platform (against the sandbox) ---


def test_the_sessions_wechat_link_names_the_chosen_platform(sandbox, live_portal, logged_in):
    keys = {"secret": "platformbsecret0123456789", "token": "platformbtoken"}
    live_portal.call(add_b)
    sandbox.add_platform(
        appid=B_APPID, secret=keys["secret"], token=keys["token"], encoding_aes_key=B_KEY,
        event_url=live_portal.url + "/wechat/events",
        message_url=live_portal.url + f"/wechat/{B_APPID}/messages/$APPID$",
        initiating_domain=live_portal.host, permission_set_ids=[1, 2, 3, 4, 15, 17, 18, 19],
    )  # fmt: skip
    sandbox.push_ticket(B_APPID)
    sandbox.flush()
    assert consent(logged_in, platform=B_APPID).status_code == 303

    def link():
        session = db.session.scalar(select(AuthorizationSession))
        found = sessions.authorization_links(session)
        return session.component_appid, found.pc_url, found.mobile_url

    component_appid, pc_url, mobile_url = live_portal.call(link)
    assert component_appid == B_APPID
    assert parse_authorization_url(pc_url).component_appid == B_APPID
    assert parse_authorization_url(mobile_url).component_appid == B_APPID
