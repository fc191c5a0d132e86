"""The authorization pages in real chromium: Referer check, phone flow, security assistant."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from app.wechat.links import pc_authorization_url
from tests.plugins.browser import PHONE, requires_chromium

pytestmark = requires_chromium


class Origin:
    """A stand-in for the portal's domain: a start page linking to WeChat, and the callback."""

    def __init__(self):
        self.callbacks: list[dict] = []
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                split = urlsplit(self.path)
                query = parse_qs(split.query)
                if split.path == "/start":
                    target = query["target"][0]
                    body = f'<a id="go" href="{target.replace("&", "&amp;")}">connect</a>'
                elif split.path == "/back":
                    origin.callbacks.append({k: v[0] for k, v in query.items()})
                    body = '<p id="back">back at the platform</p>'
                else:
                    body = ""
                data = f"<!doctype html><meta charset=utf-8>{body}".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.domain = f"127.0.0.1:{self.server.server_port}"
        self.url = f"http://{self.domain}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def start_url(self, target: str) -> str:
        return f"{self.url}/start?target={quote(target, safe='')}"


@pytest.fixture
def origin():
    instance = Origin()
    yield instance
    instance.server.shutdown()


@pytest.fixture
def flow(sandbox, origin):
    """A sandbox whose initiating domain is the origin, a token, and a PC link."""
    sandbox.configure(initiating_domain=origin.domain)
    token = sandbox.component_token()
    code = sandbox.pre_auth_code(token)
    link = pc_authorization_url(
        sandbox.component_appid, code, f"{origin.url}/back?state=s1", auth_type=3, base=sandbox.url
    )
    return {"token": token, "pre_auth_code": code, "pc_url": link}


def phone(browser):
    return browser.new_context(**PHONE).new_page()


def test_pc_page_rejects_missing_and_foreign_referer(browser, flow, sandbox_artifacts):
    page = browser.new_page()
    response = page.goto(flow["pc_url"])
    assert response.status == 403
    assert "授权入口页所在域名：空" in page.inner_text("#error")
    response = page.goto(flow["pc_url"], referer="http://evil.example/page")
    assert response.status == 403
    assert "evil.example" in page.inner_text("#error")
    page.screenshot(path=sandbox_artifacts / "pc-referer-rejected.png")
    page.close()


def test_pc_page_from_initiating_domain_shows_qr(browser, flow, origin, sandbox_artifacts):
    page = browser.new_page()
    page.goto(origin.start_url(flow["pc_url"]))
    page.click("#go")
    page.wait_for_selector("#qr svg")
    href = page.get_attribute("#continue", "href")
    assert "/wxaopen/safe/bindcomponent?" in href and flow["pre_auth_code"] in href
    page.screenshot(path=sandbox_artifacts / "pc-qr.png", full_page=True)
    page.click("#continue")
    page.wait_for_selector("#users")
    page.close()


def test_phone_flow_lands_on_redirect_uri_with_working_code(
    browser, flow, sandbox, origin, sandbox_artifacts
):
    held = sandbox.account(scenario="exclusive_elsewhere", type="official_account")
    admin = held["admin"]
    state = sandbox.state()
    mine = {a["appid"] for a in state["accounts"] if a["admin"] == admin}
    mobile = flow["pc_url"].replace(
        "/cgi-bin/componentloginpage?",
        "/wxaopen/safe/bindcomponent?action=bindcomponent&no_scan=1&",
    )
    page = phone(browser)
    page.goto(mobile)
    page.screenshot(path=sandbox_artifacts / "phone-1-users.png", full_page=True)
    page.click(f'[data-user="{admin}"]')
    page.wait_for_selector("#accounts")
    shown = set(
        page.eval_on_selector_all("#accounts [data-appid]", "els => els.map(e => e.dataset.appid)")
    )
    assert shown == mine
    full = sandbox.account(scenario="provider_limit")["appid"]
    assert page.get_attribute(f'[data-appid="{full}"]', "data-disabled") == "1"
    assert "15" in page.inner_text(f'[data-appid="{full}"]')
    page.screenshot(path=sandbox_artifacts / "phone-2-accounts.png", full_page=True)

    page.click(f'a[data-appid="{held["appid"]}"]')
    page.wait_for_selector("#sets")
    assert page.is_disabled('[data-set="4"] input')
    assert "微盟" in page.inner_text('[data-set="4"]')
    assert page.is_enabled('[data-set="1"] input')
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.screenshot(path=sandbox_artifacts / "phone-3-sets.png", full_page=True)
    page.uncheck('[data-set="3"] input')
    page.click("#confirm")
    page.wait_for_selector("#back")
    (callback,) = origin.callbacks
    assert callback["state"] == "s1" and callback["expires_in"] == "3600"
    result = sandbox.wechat(
        "component/api_query_auth",
        {"component_appid": sandbox.component_appid, "authorization_code": callback["auth_code"]},
        token=flow["token"],
    )
    info = result["authorization_info"]
    assert info["authorizer_appid"] == held["appid"]
    granted = {f["funcscope_category"]["id"] for f in info["func_info"]}
    assert 4 not in granted and 3 not in granted and 1 in granted
    page.context.close()


def test_phone_refuses_a_16th_provider(browser, flow, sandbox, sandbox_artifacts):
    full = sandbox.account(scenario="provider_limit")
    mobile = flow["pc_url"].replace("/cgi-bin/componentloginpage?", "/wxaopen/safe/bindcomponent?")
    page = phone(browser)
    page.goto(f"{mobile}&wechat_user={full['admin']}&account={full['appid']}&lang=en")
    assert page.is_disabled("#confirm")
    assert "15 platforms" in page.inner_text("#limit")
    page.evaluate("document.querySelector('#confirm').disabled = false")
    page.click("#confirm")
    page.wait_for_selector("#form-error")
    page.screenshot(path=sandbox_artifacts / "phone-limit-en.png", full_page=True)
    assert sandbox.state()["deliveries"] == [
        d for d in sandbox.deliveries() if d["info_type"] == "component_verify_ticket"
    ]
    page.context.close()


def test_security_assistant_updates_and_revokes(browser, sandbox, receiver, sandbox_artifacts):
    sandbox.configure(event_url=receiver.event_url)
    token = sandbox.component_token()
    granted = sandbox.authorize(token, permission_set_ids=[1, 2, 3])
    appid, admin = granted["account"]["appid"], granted["account"]["admin"]
    page = phone(browser)
    page.goto(f"{sandbox.url}/sandbox/assistant/{admin}")
    section = f'section[data-appid="{appid}"]'
    page.uncheck(f'{section} input[value="3"]')
    page.click(f'{section} button[value="update"]')
    page.wait_for_selector("#done")
    page.screenshot(path=sandbox_artifacts / "assistant.png", full_page=True)
    page.click(f'{section} button[value="revoke"]')
    page.wait_for_selector("#done")
    sandbox.flush()
    kinds = [d["info_type"] for d in sandbox.deliveries()]
    assert kinds == ["component_verify_ticket", "authorized", "updateauthorized", "unauthorized"]
    grant = next(g for g in sandbox.state()["authorizations"] if g["authorizer_appid"] == appid)
    assert grant["status"] == "revoked" and grant["permission_set_ids"] == [1, 2]
    page.context.close()


def test_dashboard(browser, sandbox, sandbox_artifacts):
    token = sandbox.component_token()
    sandbox.authorize(token)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{sandbox.url}/sandbox/")
    assert "authorized" in page.inner_text("#deliveries")
    assert sandbox.component_appid in page.inner_text("#platform")
    page.screenshot(path=sandbox_artifacts / "dashboard.png", full_page=True)
    page.close()


def test_dashboard_conversation(browser, sandbox, receiver, sandbox_artifacts):
    sandbox.configure(message_url=receiver.message_url)
    account = sandbox.authorize(sandbox.component_token())["account"]
    receiver.replies.append("")
    sandbox.user_message(account["appid"], "text", content="营业时间？")
    sandbox.user_message(account["appid"], "event", event="subscribe")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{sandbox.url}/sandbox/?lang=en")
    rows = page.locator(f'.conversation[data-appid="{account["appid"]}"] tr.message')
    assert rows.count() == 2
    assert "营业时间？" in rows.nth(0).inner_text() and "no reply" in rows.nth(0).inner_text()
    assert "event subscribe" in rows.nth(1).inner_text() and "success" in rows.nth(1).inner_text()
    page.locator("#conversations").screenshot(path=sandbox_artifacts / "conversation.png")
    page.close()
