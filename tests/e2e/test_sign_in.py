"""Signing in through a real browser, in both languages and at phone and desktop sizes."""

import pytest

from tests import factories
from tests.plugins.browser import DESKTOP, PHONE, requires_chromium

pytestmark = requires_chromium


@pytest.mark.parametrize("size, locale", [(DESKTOP, "en-US"), (PHONE, "zh-CN")])
def test_sign_in_lands_on_my_accounts(browser, live_portal, artifacts, size, locale):
    admin = factories.make_merchant_admin()
    page = browser.new_context(**size, locale=locale).new_page()
    page.goto(live_portal.url + "/")
    assert page.url.startswith(live_portal.url + "/login")
    page.screenshot(path=artifacts / "sign-in.png", full_page=True)

    page.get_by_label("邮箱" if locale == "zh-CN" else "Email").fill(admin.email)
    page.get_by_label("密码" if locale == "zh-CN" else "Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="登录" if locale == "zh-CN" else "Sign in").click()

    page.wait_for_url(live_portal.url + "/merchant/")
    heading = page.get_by_role("heading", level=1)
    assert heading.inner_text() == ("我的账号" if locale == "zh-CN" else "My accounts")
    page.screenshot(path=artifacts / "landing.png", full_page=True)


def test_language_switch_and_sign_out(browser, live_portal, artifacts):
    staff = factories.make_staff()
    page = browser.new_context(**DESKTOP, locale="zh-CN").new_page()
    page.goto(live_portal.url + "/login")
    page.get_by_role("button", name="English").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Sign in"
    page.get_by_label("Email").fill(staff.email)
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(live_portal.url + "/staff/")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(live_portal.url + "/login")
    assert page.get_by_text("You have signed out.").is_visible()
    page.screenshot(path=artifacts / "signed-out.png")
