"""In a real browser: an administrator invites a viewer, the emailed link makes the account,
and the viewer sees the merchant's pages without any action; then a forgotten password."""

import re

from tests import factories
from tests.access.conftest import deliver, parts
from tests.plugins.browser import DESKTOP, requires_chromium

pytestmark = requires_chromium

NEW_PASSWORD = "viewer long password"


def _sign_in(page, url, email, password=factories.PASSWORD):
    page.goto(url + "/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(url + "/merchant/")


def test_invite_a_viewer_by_email_and_reset_a_password(
    browser, smtp_server, live_portal, artifacts
):
    merchant = factories.make_merchant(name="Teahouse")
    admin = factories.make_merchant_admin(merchant)
    url = live_portal.url
    page = browser.new_context(**DESKTOP, locale="en-US").new_page()
    _sign_in(page, url, admin.email)
    page.get_by_role("link", name="Team").click()
    page.get_by_label("Email").fill("viewer@example.com")
    page.get_by_label("Role", exact=True).select_option("merchant_viewer")
    page.get_by_role("button", name="Send invitation").click()
    page.get_by_text("We are emailing the invitation to viewer@example.com").wait_for()
    page.screenshot(path=artifacts / "invited.png", full_page=True)

    live_portal.call(deliver)
    text_part, _html = parts(smtp_server.only())
    link = re.search(re.escape(url) + r"/invitations/[\w-]+", text_part).group(0)

    viewer = browser.new_context(**DESKTOP, locale="en-US").new_page()
    viewer.goto(link)
    viewer.get_by_label("New password").fill(NEW_PASSWORD)
    viewer.get_by_label("Repeat the password").fill(NEW_PASSWORD)
    viewer.get_by_role("button", name="Create my account").click()
    viewer.wait_for_url(url + "/merchant/")
    assert viewer.locator("#connect-account").count() == 0
    viewer.get_by_role("link", name="Team").click()
    assert viewer.get_by_text(admin.email).is_visible()
    assert viewer.get_by_role("button", name="Send invitation").count() == 0
    assert viewer.get_by_role("button", name="Change role").count() == 0
    viewer.screenshot(path=artifacts / "viewer-team.png", full_page=True)

    # Forgotten password, from the sign-in page, in a fresh browser.
    other = browser.new_context(**DESKTOP, locale="en-US").new_page()
    other.goto(url + "/login")
    other.get_by_role("link", name="Forgot your password?").click()
    other.get_by_label("Email").fill("viewer@example.com")
    other.get_by_role("button", name="Send me a link").click()
    other.locator("#reset-requested").wait_for()
    live_portal.call(deliver)
    reset_text, _html = parts(smtp_server.messages[-1])
    reset_link = re.search(re.escape(url) + r"/reset-password\?token=[\w-]+", reset_text).group(0)
    other.goto(reset_link)
    other.get_by_label("New password").fill("a fresh long password")
    other.get_by_label("Repeat the password").fill("a fresh long password")
    other.get_by_role("button", name="Save the new password").click()
    other.wait_for_url(url + "/login")
    _sign_in(other, url, "viewer@example.com", "a fresh long password")
    # The viewer's first browser was signed out by the new password.
    viewer.goto(url + "/merchant/")
    assert viewer.url.startswith(url + "/login")
