"""Signed-in devices in a real browser: remember-me survives a restart, a device is revoked."""

from tests import factories
from tests.plugins.browser import DESKTOP, PHONE, requires_chromium

pytestmark = requires_chromium


def _sign_in(page, portal, email, *, remember=False):
    page.goto(portal.url + "/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(factories.PASSWORD)
    if remember:
        page.get_by_label("Keep me signed in on this device").check()
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(portal.url + "/staff/")


def _cookie(context, name):
    return next((c["value"] for c in context.cookies() if c["name"] == name), None)


def test_list_and_revoke_a_session_and_resume_a_remembered_one(browser, live_portal, artifacts):
    staff = factories.make_staff()
    laptop = browser.new_context(**DESKTOP, locale="en-US")
    phone = browser.new_context(**PHONE, locale="en-US")
    laptop_page, phone_page = laptop.new_page(), phone.new_page()
    _sign_in(laptop_page, live_portal, staff.email, remember=True)
    _sign_in(phone_page, live_portal, staff.email)

    # The laptop "restarts": its session cookie is gone, the remember-me cookie signs it back in.
    first_remember = _cookie(laptop, "remember_token")
    laptop.clear_cookies(name="session")
    laptop_page.goto(live_portal.url + "/settings")
    assert laptop_page.url == live_portal.url + "/settings"
    assert _cookie(laptop, "remember_token") not in (None, first_remember)  # rotated on use

    rows = laptop_page.locator("#sessions tbody tr")
    assert rows.count() == 2
    this_device = laptop_page.locator('#sessions tbody tr[aria-current="true"]')
    assert this_device.count() == 1 and "Kept signed in" in this_device.inner_text()
    laptop_page.screenshot(path=artifacts / "sessions.png", full_page=True)

    other = laptop_page.locator('#sessions tbody tr:not([aria-current="true"])')
    other.get_by_role("button", name="Sign out this device").click()
    laptop_page.wait_for_url(live_portal.url + "/settings")
    assert laptop_page.get_by_text("That device was signed out.").is_visible()
    assert laptop_page.locator("#sessions tbody tr").count() == 1

    phone_page.goto(live_portal.url + "/staff/")
    assert phone_page.url.startswith(live_portal.url + "/login")

    laptop_page.get_by_role("button", name="Sign out everywhere").click()
    laptop_page.wait_for_url(live_portal.url + "/login")
    laptop_page.goto(live_portal.url + "/staff/")
    assert laptop_page.url.startswith(live_portal.url + "/login")
    laptop.close()
    phone.close()
