"""The merchant pages end to end: real chromium, portal and sandbox on real ports.

Screenshots of every step land in test-artifacts/<test>/ for people to look at.
"""

import re

import pytest

from app.models import Authorizer
from tests import factories
from tests.plugins.browser import DESKTOP, PHONE, requires_chromium

pytestmark = requires_chromium

WECHAT_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI "
    "Language/zh_CN"
)


class Flow:
    """One merchant admin in a browser, plus the sandbox's phone for WeChat's side."""

    def __init__(self, browser, sandbox, portal, artifacts, size=DESKTOP, locale="en-US"):
        self.browser, self.sandbox, self.portal, self.artifacts = (
            browser,
            sandbox,
            portal,
            artifacts,
        )
        self.size, self.locale = size, locale
        self.context = browser.new_context(**size, locale=locale)
        self.page = self.context.new_page()
        self.hosts = set()
        self.page.on("request", lambda request: self.hosts.add(request.url.split("/")[2]))
        self.n = 0
        sandbox.push_ticket()
        sandbox.flush()
        self.admin = factories.make_merchant_admin()

    def shot(self, name, page=None):
        self.n += 1
        (page or self.page).screenshot(
            path=self.artifacts / f"{self.n:02d}-{name}.png", full_page=True
        )

    def login(self):
        page = self.page
        page.goto(self.portal.url + "/login")
        page.fill("input[name=email]", self.admin.email)
        page.fill("input[name=password]", factories.PASSWORD)
        page.press("input[name=password]", "Enter")
        page.wait_for_url(self.portal.url + "/merchant/")

    def wizard(self, account_type, sets=None, untick=()):
        """Steps 1-3; returns on the connect step (4)."""
        page = self.page
        page.click("#connect-account")
        self.shot("step1-type")
        page.check(f"input[name=type][value={account_type}]")
        page.click("#wizard-next")
        page.wait_for_selector("input[name=sets]")
        for set_id in sets or ():
            page.check(f"#set-{set_id}")
        for set_id in untick:
            page.uncheck(f"#set-{set_id}")
        self.shot("step2-permissions")
        page.click("#wizard-next")
        page.wait_for_selector("#agree")
        page.click("#wizard-next")  # without the tick: refused, explained
        page.wait_for_selector("#agree-error")
        self.shot("step3-consent-refused")
        page.check("#agree")
        page.click("#wizard-next")
        page.wait_for_selector("#status")
        self.shot("step4-connect")
        return page.url.rsplit("/", 1)[1]

    def wechat_phone(self, connect_url, appid, admin, untick=(), tick=()):
        """Scan the QR with WeChat: our link page, then WeChat's phone pages."""
        context = self.browser.new_context(**PHONE, locale="zh-CN", user_agent=WECHAT_UA)
        phone = context.new_page()
        phone.goto(connect_url)
        phone.wait_for_selector("#mobile-link")
        self.shot("phone-link-page", phone)
        phone.click("#mobile-link")
        self._consent(phone, appid, admin, untick, tick)
        return phone

    def wechat_pc(self, appid, admin, untick=(), tick=()):
        """The desktop button: our link page in a new tab, then WeChat's PC page."""
        with self.context.expect_page() as opened:
            self.page.click("#open-pc")
        tab = opened.value
        tab.wait_for_selector("#pc-link")
        self.shot("pc-link-page", tab)
        tab.click("#pc-link")
        tab.wait_for_selector("#qr svg")
        self.shot("wechat-pc-page", tab)
        tab.click("#continue")
        self._consent(tab, appid, admin, untick, tick)
        return tab

    def _consent(self, page, appid, admin, untick, tick):
        page.wait_for_selector("#users, #accounts, #sets")
        if page.query_selector(f'[data-user="{admin}"]'):
            page.click(f'[data-user="{admin}"]')
        page.wait_for_selector("#accounts, #sets")
        if page.query_selector(f'a[data-appid="{appid}"]'):
            page.click(f'a[data-appid="{appid}"]')
        page.wait_for_selector("#sets")
        for set_id in untick:  # WeChat may not even list sets the link did not ask for
            if page.query_selector(f'[data-set="{set_id}"] input'):
                page.uncheck(f'[data-set="{set_id}"] input')
        for set_id in tick:
            page.check(f'[data-set="{set_id}"] input')
        self.shot("wechat-sets", page)
        page.click("#confirm")
        # Signed in (desktop tab): back on the merchant's own session page with the details;
        # a phone that is not signed in: our neutral result page ("received").
        page.wait_for_url(re.compile(r".*/(merchant/sessions|connect/result)/.*"))
        page.wait_for_selector("[data-state]")
        assert page.get_attribute("[data-state]", "data-state") in ("completed", "received")
        self.shot("wechat-back-on-our-result-page", page)

    def wait_result(self, state="completed"):
        self.page.wait_for_selector(f"#session [data-state={state}]", timeout=15000)
        self.shot(f"step5-result-{state}")

    def assert_own_hosts_only(self):
        assert self.hosts <= {self.portal.host}, self.hosts

    def close(self):
        self.context.close()


@pytest.fixture
def flow_factory(browser, sandbox, live_portal, artifacts):
    made = []

    def make(**kwargs):
        made.append(Flow(browser, sandbox, live_portal, artifacts, **kwargs))
        return made[-1]

    yield make
    for flow in made:
        flow.close()


def connect_url_of(page):
    return page.input_value("#connect-link")


def appid_to_id(portal, appid):
    from sqlalchemy import select

    from app.extensions import db

    return portal.call(
        lambda: db.session.scalar(select(Authorizer.id).where(Authorizer.appid == appid))
    )


@pytest.mark.parametrize("locale", ["en-US", "zh-CN"])
def test_connect_official_account_on_desktop_by_pc_link(flow_factory, sandbox, locale):
    flow = flow_factory(locale=locale)
    account = sandbox.account(scenario="fresh", type="official_account")
    flow.login()
    flow.shot("accounts-empty")
    flow.wizard("official_account")
    tab = flow.wechat_pc(account["appid"], account["admin"])
    tab.close()
    flow.wait_result()
    result = flow.page.inner_text("#session")
    assert account["nick_name"] in result
    assert not flow.page.query_selector("#request-missing")
    flow.page.click("text=" + ("Go to my accounts" if locale == "en-US" else "我的账号"))
    flow.page.wait_for_url("**/merchant/")
    assert account["nick_name"] in flow.page.inner_text("main")
    flow.shot("accounts-connected")
    flow.assert_own_hosts_only()


def quick_connect(flow, account, set_ids):
    """Connect an account without the wizard (already covered): a session, then the phone."""
    from app.services.authorization import consent, sessions

    def start():
        from app.extensions import db
        from app.models import User

        user = db.session.get(User, flow.admin.id)
        session = consent.start_connection(
            user.merchant, user, account_type=account["type"], set_ids=set_ids, version="t"
        )
        return sessions.connect_url(session)

    phone = flow.wechat_phone(flow.portal.call(start), account["appid"], account["admin"])
    phone.context.close()
    return appid_to_id(flow.portal, account["appid"])


def test_connect_mini_program_by_phone_flow(flow_factory, sandbox):
    flow = flow_factory(size=PHONE, locale="zh-CN")
    account = sandbox.account(scenario="fresh", type="mini_program")
    flow.login()
    flow.shot("accounts-empty")
    flow.wizard("mini_program")
    assert flow.page.evaluate("document.documentElement.scrollWidth") <= 375
    phone = flow.wechat_phone(connect_url_of(flow.page), account["appid"], account["admin"])
    phone.context.close()
    flow.wait_result()
    assert account["nick_name"] in flow.page.inner_text("#session")
    assert flow.page.evaluate("document.documentElement.scrollWidth") <= 375
    flow.assert_own_hosts_only()


def test_partial_grant_shows_gap_and_request_missing_fixes_it(flow_factory, sandbox):
    flow = flow_factory()
    account = sandbox.account(scenario="fresh", type="official_account")
    flow.login()
    flow.wizard("official_account")
    tab = flow.wechat_pc(account["appid"], account["admin"], untick=[3])
    tab.close()
    flow.wait_result()
    gap = flow.page.inner_text(".gap")
    assert "Account services" in gap and "not ticked" in gap
    flow.page.click("#request-missing")
    flow.page.wait_for_selector("#status")
    flow.shot("request-missing-connect-step")
    assert "only works for" in flow.page.inner_text("#session")
    phone = flow.wechat_phone(
        connect_url_of(flow.page), account["appid"], account["admin"], tick=[3]
    )
    phone.context.close()
    flow.wait_result()
    assert not flow.page.query_selector(".gap")
    flow.page.goto(flow.portal.url + "/merchant/")
    assert "Missing" not in flow.page.inner_text("main")
    flow.shot("accounts-no-gap")


def test_update_removing_a_set(flow_factory, sandbox):
    flow = flow_factory()
    account = sandbox.account(scenario="fresh", type="official_account")
    account_id = quick_connect(flow, account, [1, 2, 3])
    flow.login()
    flow.page.goto(f"{flow.portal.url}/merchant/accounts/{account_id}/update")
    flow.page.uncheck("#set-2")
    flow.page.wait_for_selector("#diff .diff-removed")  # htmx preview of the change
    assert "User management" in flow.page.inner_text("#diff")
    flow.shot("update-diff")
    flow.page.check("#agree")
    flow.page.click("#wizard-next")
    flow.page.wait_for_selector("#status")
    flow.shot("update-connect-step")
    phone = flow.wechat_phone(
        connect_url_of(flow.page), account["appid"], account["admin"], untick=[2]
    )
    phone.context.close()
    flow.wait_result()
    flow.page.goto(f"{flow.portal.url}/merchant/accounts/{account_id}")
    assert "Removed: User management" in flow.page.inner_text("main")
    flow.shot("account-history")


def test_revocation_from_security_assistant_appears_live(flow_factory, sandbox, browser):
    flow = flow_factory()
    account = sandbox.account(scenario="fresh", type="mini_program")
    account_id = quick_connect(flow, account, [17, 18])
    flow.login()
    flow.page.goto(f"{flow.portal.url}/merchant/accounts/{account_id}")
    flow.shot("account-detail")
    flow.page.goto(f"{flow.portal.url}/merchant/accounts/{account_id}/revoke")
    flow.shot("revoke-waiting")
    phone = browser.new_context(**PHONE, locale="zh-CN").new_page()
    phone.goto(f"{sandbox.url}/sandbox/assistant/{account['admin']}")
    phone.click(f'section[data-appid="{account["appid"]}"] button[value="revoke"]')
    phone.wait_for_selector("#done")
    flow.shot("security-assistant", phone)
    phone.context.close()
    flow.page.wait_for_selector("#revoke_status.status-completed", timeout=15000)
    assert "Access withdrawn." in flow.page.inner_text("#revoke_status")
    flow.shot("revoke-confirmed")
    flow.page.goto(flow.portal.url + "/merchant/")
    assert account["nick_name"] not in flow.page.inner_text("main")


def test_delete_my_data(flow_factory, sandbox):
    flow = flow_factory(locale="zh-CN")
    account = sandbox.account(scenario="fresh", type="official_account")
    account_id = quick_connect(flow, account, [1, 2, 3])
    # The revocation push never reaches us (e.g. an outage): the merchant asks us directly.
    sandbox.configure(event_url="http://127.0.0.1:9/wechat/events")
    sandbox.revoke(account["appid"])
    flow.login()
    flow.page.goto(f"{flow.portal.url}/merchant/accounts/{account_id}/delete")
    flow.shot("delete-confirm")
    flow.page.click("#confirm-delete")
    flow.page.wait_for_url(flow.portal.url + "/merchant/")
    assert flow.page.query_selector(".flash-success")
    assert account["nick_name"] not in flow.page.inner_text("main")
    flow.shot("deleted")


def test_expired_session(flow_factory, sandbox, portal_clock, browser):
    flow = flow_factory(locale="zh-CN")
    flow.login()
    flow.wizard("official_account", sets=[7])
    link = connect_url_of(flow.page)
    portal_clock.advance(25 * 3600)
    flow.page.wait_for_selector("#session [data-state=expired]", timeout=15000)
    flow.shot("expired-live")
    phone = browser.new_context(**PHONE, locale="zh-CN", user_agent=WECHAT_UA).new_page()
    response = phone.goto(link)
    assert response.status == 410
    flow.shot("phone-expired-link", phone)
    phone.context.close()
    flow.page.click("#session .result-problem a.button.primary")
    flow.page.wait_for_selector("#set-7:checked")
    flow.shot("start-again")
