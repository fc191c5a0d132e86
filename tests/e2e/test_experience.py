"""Issue 14 in a real browser against the sandbox, in Chinese and English: the pages say the true
thing (what to tick, nothing changed, removals), deletion is explained before any button, partial
grants are amber, the tab title follows the live swap, and a resubmitted consent opens no second
session."""

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuthorizationSession
from app.services.platform import provider
from tests.merchant.test_e2e import Flow, connect_url_of, quick_connect
from tests.plugins.browser import requires_chromium

pytestmark = requires_chromium


@pytest.fixture
def flows(browser, sandbox, live_portal, artifacts):
    """Merchant admins in a browser (see tests/merchant/test_e2e.py: Flow)."""
    made = []

    def make(**kwargs):
        made.append(Flow(browser, sandbox, live_portal, artifacts, **kwargs))
        return made[-1]

    yield make
    for flow in made:
        flow.close()


TEXT = {
    "zh-CN": {"nothing": "没有变化", "partial": "部分授权", "tick": "请勾选", "removed": "移除：",
              "withdraw_first": "请先取消授权", "connected": "账号接入成功"},
    "en-US": {"nothing": "Nothing changed", "partial": "Partially authorized", "tick": "Tick ",
              "removed": "Removed: ", "withdraw_first": "Withdraw access first",
              "connected": "Account connected"},
}  # fmt: skip


def _signed_in(flow, locale):
    flow.login()
    # The user's language follows the browser on first sign-in; make it explicit for the test.
    if locale == "zh-CN" and "English" not in flow.page.inner_text("header"):
        flow.page.click("header .locale-switch button")
    if locale == "en-US" and "English" in flow.page.inner_text("header"):
        flow.page.click("header .locale-switch button")


@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
def test_request_missing_without_ticking_says_nothing_changed(flows, sandbox, app, locale):
    app.config["REQUIRED_PERMISSION_SETS_OFFICIAL_ACCOUNT"] = [1, 2, 3]
    words = TEXT[locale]
    flow = flows(locale=locale)
    account = sandbox.account(scenario="fresh", type="official_account")
    account_id = quick_connect(flow, account, [1, 2])
    _signed_in(flow, locale)
    flow.page.goto(f"{flow.portal.url}/merchant/accounts/{account_id}")
    assert words["partial"] in flow.page.inner_text(".account-head")
    assert flow.page.get_attribute("[data-status=partial]", "class").count("badge-partial")
    flow.shot("account-partial")
    flow.page.click("#account_body form button[type=submit]")  # request missing permissions
    flow.page.wait_for_selector("#wechat-plan")
    plan = flow.page.inner_text("#plan-tick")
    assert words["tick"] in plan  # names the set WeChat shows without a tick
    flow.shot("request-missing-plan")
    # The merchant confirms on WeChat's page as shown: nothing new is ticked.
    phone = flow.wechat_phone(connect_url_of(flow.page), account["appid"], account["admin"])
    phone.context.close()
    flow.wait_result()
    assert flow.page.inner_text("h1") == words["nothing"]
    assert flow.page.title().startswith(words["nothing"])  # the tab title followed the swap
    assert flow.page.query_selector("#nothing-changed")
    flow.shot("nothing-changed")
    flow.assert_own_hosts_only()


@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
def test_update_removal_is_reported_on_the_result(flows, sandbox, locale):
    words = TEXT[locale]
    flow = flows(locale=locale)
    account = sandbox.account(scenario="fresh", type="official_account")
    account_id = quick_connect(flow, account, [1, 2, 3])
    _signed_in(flow, locale)
    flow.page.goto(f"{flow.portal.url}/merchant/accounts/{account_id}/update")
    flow.page.uncheck("#set-2")
    flow.page.wait_for_selector("#diff .diff-removed")
    flow.page.check("#agree")
    flow.page.click("#wizard-next")
    flow.page.wait_for_selector("#plan-dropped")
    flow.shot("removal-plan")
    phone = flow.wechat_phone(connect_url_of(flow.page), account["appid"], account["admin"])
    phone.context.close()
    flow.wait_result()
    assert words["removed"] in flow.page.inner_text("#what-changed")
    flow.shot("removal-result")


@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
def test_delete_on_an_active_account_explains_first(flows, sandbox, locale):
    words = TEXT[locale]
    flow = flows(locale=locale)
    account = sandbox.account(scenario="fresh", type="official_account")
    account_id = quick_connect(flow, account, [1, 2, 3])
    _signed_in(flow, locale)
    flow.page.goto(f"{flow.portal.url}/merchant/accounts/{account_id}/delete")
    assert flow.page.inner_text("h1") == words["withdraw_first"]
    assert flow.page.query_selector("#confirm-delete") is None
    assert flow.page.query_selector("#delete-needs-revoke")
    flow.shot("delete-needs-revoke")
    flow.page.click("#revoke-path")
    flow.page.wait_for_url(f"**/merchant/accounts/{account_id}/revoke")


@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
def test_back_and_resubmit_consent_opens_one_session(flows, sandbox, live_portal, locale):
    flow = flows(locale=locale)
    _signed_in(flow, locale)
    flow.wizard("official_account")
    first = flow.page.url
    flow.page.go_back()  # back to the consent form, as a hurried merchant would
    flow.page.wait_for_selector("#agree")
    if not flow.page.is_checked("#agree"):
        flow.page.check("#agree")
    flow.page.click("#wizard-next")
    flow.page.wait_for_selector("#status")
    assert flow.page.url == first
    count = live_portal.call(lambda: db.session.scalar(select(func.count(AuthorizationSession.id))))
    assert count == 1


def test_provider_named_on_the_phone_landing_and_revoke_steps(flows, sandbox, live_portal):
    live_portal.call(
        lambda: provider.update_provider("云帆互动", logo_bytes=provider.monogram_png())
    )
    flow = flows(locale="zh-CN")
    account = sandbox.account(scenario="fresh", type="mini_program")
    account_id = quick_connect(flow, account, [17, 18])
    _signed_in(flow, "zh-CN")
    flow.page.goto(f"{flow.portal.url}/merchant/accounts/{account_id}/revoke")
    steps = flow.page.inner_text("ol.how")
    assert "云帆互动" in steps and "您的服务商" not in steps
    assert flow.page.locator("header img.brand-logo").evaluate("img => img.naturalWidth") > 0
    flow.shot("revoke-named")


PLAIN = {
    "zh-CN": {"login": "请先登录", "original": "原始ID", "auto": "本页就会自动更新"},
    "en-US": {"login": "Please sign in to see this page.", "original": "Original ID",
              "auto": "This page updates by itself"},
}  # fmt: skip


@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
def test_plain_pages_without_javascript_say_only_true_things(browser, live_portal, locale):
    from tests import factories
    from tests.merchant.conftest import make_account, make_session
    from tests.plugins.browser import DESKTOP

    words = PLAIN[locale]
    admin = factories.make_merchant_admin()
    account = make_account(admin.merchant)
    session = make_session(admin.merchant, admin)
    context = browser.new_context(**DESKTOP, locale=locale, java_script_enabled=False)
    page = context.new_page()
    page.goto(live_portal.url + "/merchant/")
    assert words["login"] in page.inner_text(".flashes")  # Flask-Login's prompt, translated
    page.fill("input[name=email]", admin.email)
    page.fill("input[name=password]", factories.PASSWORD)
    page.press("input[name=password]", "Enter")
    page.wait_for_url(live_portal.url + "/merchant/")
    page.goto(f"{live_portal.url}/merchant/accounts/{account.id}")
    assert words["original"] in page.inner_text("dl.profile")
    page.goto(f"{live_portal.url}/merchant/sessions/{session.public_id}")
    assert not page.get_by_text(words["auto"]).is_visible()  # untrue without JavaScript
    assert not page.locator("[data-copy]").is_visible()  # a copy button that cannot copy
    assert page.locator("#status a").is_visible()  # reloading is the way to see news
    context.close()
