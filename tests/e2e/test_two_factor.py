"""Staff two-factor sign-in through a real browser: enroll from the page, sign in with a code and
with a recovery code."""

import time

import pyotp

from tests import factories
from tests.plugins.browser import DESKTOP, requires_chromium

pytestmark = requires_chromium


def sign_in_with_password(page, url, email):
    page.goto(url + "/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def sign_out(page, url):
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(url + "/login")


def test_enroll_then_sign_in_with_a_code_and_with_a_recovery_code(
    app, browser, live_portal, artifacts
):
    app.config["GRANTDESK_STAFF_MFA"] = "required"
    staff = factories.make_staff()
    url = live_portal.url
    page = browser.new_context(**DESKTOP, locale="en-US").new_page()

    # First sign-in: straight to enrollment, the console stays closed until it is done.
    sign_in_with_password(page, url, staff.email)
    page.wait_for_url(url + "/settings/two-factor")
    assert page.locator(".qr svg").is_visible()
    secret = page.locator("#totp-secret").inner_text().strip()
    page.screenshot(path=artifacts / "enroll.png", full_page=True)
    totp = pyotp.TOTP(secret)
    page.get_by_label("Code", exact=True).fill(totp.now())
    page.get_by_role("button", name="Turn on two-factor sign-in").click()
    codes = page.locator("#recovery-codes code").all_inner_texts()
    assert len(codes) == 10
    page.screenshot(path=artifacts / "recovery-codes.png", full_page=True)
    page.get_by_role("link", name="I have saved them").click()
    page.wait_for_url(url + "/staff/")
    sign_out(page, url)

    # With a code: the enrollment code's time step is used up, so take the next one (±1 step).
    sign_in_with_password(page, url, staff.email)
    page.wait_for_url(url + "/login/two-factor")
    page.goto(url + "/staff/")
    page.wait_for_url(f"{url}/login?next=%2Fstaff%2F")  # the password alone opens nothing
    sign_in_with_password(page, url, staff.email)
    page.wait_for_url(url + "/login/two-factor")
    page.get_by_label("Code", exact=True).fill(totp.at(time.time() + 30))
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(url + "/staff/")
    sign_out(page, url)

    # With a recovery code, which then is spent.
    sign_in_with_password(page, url, staff.email)
    page.wait_for_url(url + "/login/two-factor")
    page.get_by_label("Code", exact=True).fill(codes[0])
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(url + "/staff/")
    page.goto(url + "/settings/two-factor")
    assert page.get_by_text("Unused recovery codes: 9").is_visible()
    page.screenshot(path=artifacts / "manage.png", full_page=True)
