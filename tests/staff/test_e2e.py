"""A staff member's walk in chromium against the sandbox: overview → filter → account → action.

A real authorization arrives from the sandbox outside any session (so it has no merchant and
raises an attention item), next to seeded volume; staff find it with the live filter, refresh
its token through the sandbox, and assign it to a merchant. Screenshots go to test-artifacts/.
"""

import pytest
from sqlalchemy import select

from app.cli_volume import seed_volume
from app.extensions import db
from app.models import AuditEntry, Authorizer
from tests import factories
from tests.plugins.browser import DESKTOP, PHONE, requires_chromium

pytestmark = requires_chromium


def _sign_in(page, url, email):
    page.goto(url + "/login")
    page.locator("input[name=email]").fill(email)
    page.locator("input[name=password]").fill(factories.PASSWORD)
    page.locator("form button[type=submit]").last.click()
    page.wait_for_url(url + "/staff/")


@pytest.fixture
def authorized_account(app, sandbox, live_portal):
    """An account the sandbox authorized (pushed to the portal), plus seeded volume."""
    seed_volume(accounts=400, merchants=25, events=2000, seed=3, batch=200)
    token = sandbox.component_token()  # also pushes a ticket to the portal
    sandbox.flush()
    result = sandbox.authorize(token, scenario="fresh", type="official_account")
    sandbox.flush()
    appid = result["account"]["appid"]
    live_portal.wait_for(lambda: db.session.scalar(select(Authorizer.id).where(
        Authorizer.appid == appid)), timeout=20)  # fmt: skip
    return result["account"]


def test_staff_walk(browser, live_portal, artifacts, authorized_account):
    staff = factories.make_staff()
    merchant = factories.make_merchant(name="西湖茶社 West Lake Tea")
    db.session.commit()
    url = live_portal.url
    page = browser.new_context(**DESKTOP, locale="en-US").new_page()
    _sign_in(page, url, staff.email)
    assert page.get_by_role("heading", level=1).inner_text() == "Overview"
    assert page.locator("svg.chart").count() == 3
    page.screenshot(path=artifacts / "1-overview.png", full_page=True)

    page.get_by_role("link", name="Authorizations").first.click()
    page.wait_for_url(url + "/staff/accounts/")
    page.screenshot(path=artifacts / "2-authorizations.png", full_page=True)
    # live filtering: the URL follows, and a reload shows the same view
    page.get_by_label("Status").select_option("active")
    page.wait_for_url("**status=active**")
    page.get_by_label("Name or appid").fill(authorized_account["appid"])
    page.wait_for_url(f"**q={authorized_account['appid']}**")
    rows = page.locator("#results tbody tr")
    rows.first.wait_for()
    assert rows.count() == 1
    page.reload()
    assert page.locator("#results tbody tr").count() == 1
    assert page.get_by_label("Name or appid").input_value() == authorized_account["appid"]
    page.screenshot(path=artifacts / "3-filtered.png", full_page=True)

    page.locator("#results tbody tr a").first.click()
    page.wait_for_selector("text=Token health")
    page.screenshot(path=artifacts / "4-account.png", full_page=True)

    page.get_by_role("link", name="Refresh token now").click()
    page.get_by_role("button", name="Refresh token now").click()
    page.wait_for_selector("text=Access token refreshed.")
    page.screenshot(path=artifacts / "5-refreshed.png", full_page=True)

    page.get_by_role("link", name="Resolve").first.click()
    page.get_by_label("Merchant ID").fill(str(merchant.id))
    page.get_by_role("button", name="Assign and resolve").click()
    page.wait_for_selector("text=Account assigned to")
    page.screenshot(path=artifacts / "6-assigned.png", full_page=True)

    def facts():
        merchant_id = db.session.scalar(select(Authorizer.merchant_id).where(
            Authorizer.appid == authorized_account["appid"]))  # fmt: skip
        actions = set(db.session.scalars(select(AuditEntry.action).where(
            AuditEntry.actor == staff.email)))  # fmt: skip
        return merchant_id, actions

    merchant_id, actions = live_portal.call(facts)
    assert merchant_id == merchant.id
    assert {"staff.token_refreshed", "staff.authorizer_assigned", "attention.resolved"} <= actions


def test_console_reads_on_a_phone(browser, live_portal, artifacts, app):
    seed_volume(accounts=120, merchants=10, events=500, seed=5, batch=100)
    staff = factories.make_staff()
    db.session.commit()
    page = browser.new_context(**PHONE, locale="zh-CN").new_page()
    _sign_in(page, live_portal.url, staff.email)
    page.screenshot(path=artifacts / "overview-phone.png", full_page=True)
    page.goto(live_portal.url + "/staff/accounts/?attention=y")
    page.screenshot(path=artifacts / "accounts-phone.png", full_page=True)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375 + 1
