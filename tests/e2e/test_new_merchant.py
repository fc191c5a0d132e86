"""A brand-new merchant walks the whole flow in chromium, in Chinese and English, against the
sandbox over real HTTP: accept the invitation, connect an Official Account (type, permissions,
consent, the QR page, the phone link, the result), look at the account, change its permissions,
follow the revoke guidance until WeChat confirms, and find the receipt under past authorizations.

Screenshots of every step land in test-artifacts/<test>/ for people to look at.
"""

import re

import pytest

from app.extensions import db
from app.models import Merchant
from app.services import accounts
from app.services.platform import provider
from tests.merchant.test_e2e import Flow, appid_to_id, connect_url_of
from tests.plugins.browser import requires_chromium

pytestmark = requires_chromium

PASSWORD = "a long enough passphrase 42"
TEXT = {
    "zh-CN": {"connected": "账号接入成功", "withdrawn": "授权已取消", "past": "过往授权",
              "revoked": "在微信中取消授权", "deleted": "数据已于", "result_where": "接入页面",
              "will_add": "将新增：网页服务", "exclusive": "只能授予一家服务商",
              "not_ticked": "没有勾选", "live": "本页会实时显示进度。"},
    "en-US": {"connected": "Account connected", "withdrawn": "Access withdrawn",
              "past": "Past authorizations", "revoked": "revoked in WeChat",
              "deleted": "Data deleted on", "result_where": "The connection page",
              "will_add": "You will add: Web (H5) services",
              "exclusive": "Only one provider can hold this permission",
              "not_ticked": "not ticked on WeChat's page", "live": "This page shows it live."},
}  # fmt: skip
CLOCK_WITH_SECONDS = r"\d{1,2}:\d{2}:\d{2}|[AP]M"


def invite(live_portal, email):
    """Staff create the merchant and invite its first administrator (the link in the email)."""

    def make():
        provider.update_provider("云帆互动 Yunfan", logo_bytes=provider.monogram_png())
        merchant = Merchant(name="西湖茶社 West Lake Tea")
        db.session.add(merchant)
        db.session.commit()
        return accounts.invite_admin(merchant, email)

    return f"{live_portal.url}/invitations/{live_portal.call(make)}"


@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
def test_a_new_merchant_walks_the_whole_flow(browser, sandbox, live_portal, artifacts, locale):
    words = TEXT[locale]
    flow = Flow(browser, sandbox, live_portal, artifacts, locale=locale)
    page = flow.page
    account = sandbox.account(scenario="fresh", type="official_account")

    page.goto(invite(live_portal, f"new-{locale}@example.com"))
    flow.shot("invitation")
    # Dates as everywhere else: medium date, 24-hour time, no seconds.
    assert not re.search(CLOCK_WITH_SECONDS, page.inner_text("main .hint"))
    page.fill("input[name=name]", "王小明")
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=confirm]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url("**/merchant/")
    flow.shot("accounts-empty")
    # The result shows on the connection page, not on this list.
    assert words["result_where"] in page.inner_text(".empty-state ol")

    flow.wizard("official_account")
    phone = flow.wechat_phone(connect_url_of(page), account["appid"], account["admin"])
    phone.context.close()
    flow.wait_result()
    assert page.inner_text("h1") == words["connected"]

    account_id = appid_to_id(live_portal, account["appid"])
    page.goto(f"{live_portal.url}/merchant/accounts/{account_id}")
    flow.shot("account")
    page.goto(f"{live_portal.url}/merchant/accounts/{account_id}/update")
    assert not page.is_visible("button[name=preview]")  # the list follows the ticks by itself
    assert words["exclusive"] in page.inner_text("label[for=set-4]")
    page.check("#set-4")
    page.wait_for_selector("#diff .diff-added")
    assert words["will_add"] in page.inner_text("#diff .diff-added")
    flow.shot("update-form")
    page.check("#agree")
    page.click("#wizard-next")
    page.wait_for_selector("#wechat-plan")
    flow.shot("update-plan")
    # On WeChat's page the merchant confirms without ticking the new (exclusive) set.
    phone = flow.wechat_phone(connect_url_of(page), account["appid"], account["admin"])
    phone.context.close()
    flow.wait_result()
    assert words["not_ticked"] in page.inner_text(".gap")  # the likelier cause, not only the rarer

    page.goto(f"{live_portal.url}/merchant/accounts/{account_id}/revoke")
    assert page.get_by_text(words["live"]).is_visible()  # true: JavaScript runs here
    flow.shot("revoke-guidance")
    sandbox.revoke(account["appid"])
    sandbox.flush()
    page.wait_for_selector("#revoke_status.status-completed", timeout=15000)
    assert words["withdrawn"] in page.inner_text("#revoke_status")
    flow.shot("revoke-confirmed")
    page.goto(f"{live_portal.url}/merchant/accounts/{account_id}/delete")
    flow.shot("delete-after-revoke")
    page.goto(f"{live_portal.url}/merchant/")
    past = page.inner_text("#past-authorizations")
    assert words["revoked"] in past and words["deleted"] in past
    flow.shot("past-authorizations")
    flow.assert_own_hosts_only()
    flow.close()
