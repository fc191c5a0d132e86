"""Several third-party platforms in one sandbox, over real HTTP: each with its own tickets at its
own event URL, its own secret and tokens, its own grants (an account may hold one per platform),
WeChat's limits across platforms (15 providers, exclusive sets), testing before release, the
release check per platform, and control calls with and without `component_appid`."""

import html
import re
import secrets
import sqlite3
import threading
import time

import pytest
import requests
from werkzeug.serving import make_server

from app.sandbox import create_app
from app.sandbox.grants import UNRELEASED
from app.wechat.client import ComponentClient
from app.wechat.crypto import MessageCrypto
from app.wechat.errors import CryptoError
from app.wechat.events import (
    Authorized,
    ComponentVerifyTicket,
    TextMessage,
    Unauthorized,
    build_text_reply_xml,
    parse_event,
    parse_message,
)
from tests.plugins.sandbox import Receiver

TOKEN_API = "component/api_component_token"
B_KEY = "bcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH"
A_DOMAIN, B_DOMAIN = "a.grantdesk.test", "b.grantdesk.test"


def platform_body(receiver: Receiver, **overrides) -> dict:
    """A valid POST /sandbox/api/platforms body pointing at `receiver`."""
    return {
        "appid": "wx" + secrets.token_hex(8),
        "secret": "secret" + secrets.token_hex(12),
        "token": "platformbtoken",
        "encoding_aes_key": B_KEY,
        "event_url": receiver.event_url,
        "message_url": receiver.message_url,
        "initiating_domain": B_DOMAIN,
        "permission_set_ids": [1, 2, 3, 4, 15, 17, 18, 19],
        **overrides,
    }


def crypto_of(body_or_config: dict) -> MessageCrypto:
    if "appid" in body_or_config:
        b = body_or_config
        return MessageCrypto(b["token"], b["encoding_aes_key"], b["appid"])
    c = body_or_config
    return MessageCrypto(
        c["WECHAT_TOKEN"], c["WECHAT_ENCODING_AES_KEY"], c["WECHAT_COMPONENT_APPID"]
    )


def events(receiver: Receiver, box: MessageCrypto) -> list:
    """Every push the receiver got, opened with one platform's keys."""
    return [parse_event(r.open(box)) for r in receiver.requests]


def error_of(answer: dict) -> int:
    return answer.get("errcode", 0)


@pytest.fixture
def ra():
    instance = Receiver()
    yield instance
    instance.close()


@pytest.fixture
def rb():
    instance = Receiver()
    yield instance
    instance.close()


@pytest.fixture
def two(sandbox, ra, rb):
    """The default platform A (pushing to `ra`) and a second platform B (pushing to `rb`)."""
    sandbox.configure(
        event_url=ra.event_url, message_url=ra.message_url, initiating_domain=A_DOMAIN
    )
    body = platform_body(rb, name="乙平台")
    platform = sandbox.add_platform(**body)
    return {
        "a": sandbox.component_appid,
        "b": platform["appid"],
        "body": body,
        "crypto_a": crypto_of(sandbox.app.config),
        "crypto_b": crypto_of(body),
    }


# --- the authorization pages, as a phone browses them -----------------------------------------


class Phone:
    """A browser on the admin's phone going through WeChat's authorization pages."""

    def __init__(self, sandbox):
        self.sandbox = sandbox
        self.http = requests.Session()

    def open_link(self, component_appid: str, domain: str, token: str) -> str:
        """The PC page (opened from the platform's domain); returns the phone page's URL."""
        code = self.sandbox.pre_auth_code(token, component_appid)
        page = self.http.get(
            f"{self.sandbox.url}/cgi-bin/componentloginpage",
            params={
                "component_appid": component_appid,
                "pre_auth_code": code,
                "redirect_uri": f"https://{domain}/wechat/authorized?session=s1",
                "auth_type": "3",
            },
            headers={"Referer": f"https://{domain}/connect"},
            timeout=30,
        )
        assert page.status_code == 200, page.text
        return html.unescape(re.search(r'id="continue" href="([^"]+)"', page.text).group(1))

    def get(self, url: str, **params) -> requests.Response:
        return self.http.get(url, params=params, timeout=30)

    def accounts(self, url: str, admin: int) -> dict[str, bool]:
        """The account list: appid -> whether it can be picked."""
        page = self.get(url, wechat_user=admin)
        assert page.status_code == 200, page.text
        found = re.findall(r'data-appid="(wx[0-9a-f]+)"( data-disabled="1")?', page.text)
        return {appid: not disabled for appid, disabled in found}

    def consent(self, url: str, admin: int, appid: str, set_ids) -> requests.Response:
        """Pick the account and the sets, confirm; the answer is WeChat's redirect (or a page)."""
        page = self.get(url, wechat_user=admin, account=appid)
        if page.status_code != 200:
            return page
        form = dict(
            (name, html.unescape(value))
            for name, value in re.findall(
                r'type="hidden" name="([^"]+)" value="([^"]*)"', page.text
            )
        )
        data = [*form.items(), *[("permission_set_ids", str(i)) for i in set_ids]]
        return self.http.post(url.split("?")[0], data=data, allow_redirects=False, timeout=30)


def authorize_via_pages(sandbox, component_appid, domain, account, set_ids) -> str:
    """The whole page flow for one platform; returns the auth_code of WeChat's redirect."""
    phone = Phone(sandbox)
    url = phone.open_link(component_appid, domain, sandbox.component_token(component_appid))
    assert phone.accounts(url, account["admin"])[account["appid"]] is True
    answer = phone.consent(url, account["admin"], account["appid"], set_ids)
    assert answer.status_code == 303, answer.text
    location = answer.headers["Location"]
    assert location.startswith(f"https://{domain}/wechat/authorized?session=s1&auth_code=")
    return re.search(r"auth_code=([^&]+)", location).group(1).replace("%40", "@")


def query_auth(sandbox, component_appid: str, token: str, code: str) -> dict:
    return sandbox.wechat(
        "component/api_query_auth",
        {"component_appid": component_appid, "authorization_code": code},
        token=token,
    )


def sets_of(info: dict) -> set[int]:
    return {f["funcscope_category"]["id"] for f in info["func_info"]}


# --- tickets and component tokens --------------------------------------------------------------


def test_scheduled_tickets_reach_each_platforms_own_event_url(tmp_path, ra, rb):
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'sb.sqlite'}",
            "SANDBOX_TICKET_INTERVAL": 0.5,
            "SANDBOX_EVENT_URL": ra.event_url,
            "SANDBOX_PUSH_RETRY_DELAY": 0.05,
        }
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        body = platform_body(rb)
        added = requests.post(f"{url}/sandbox/api/platforms", json=body, timeout=30)
        assert added.status_code == 201, added.text
        assert len(ra.wait_for(3)) >= 3 and len(rb.wait_for(3)) >= 3  # at start, then per round
        crypto_a, crypto_b = crypto_of(app.config), crypto_of(body)
        tickets_a, tickets_b = events(ra, crypto_a), events(rb, crypto_b)
        assert all(isinstance(t, ComponentVerifyTicket) for t in tickets_a + tickets_b)
        assert {t.app_id for t in tickets_a} == {app.config["WECHAT_COMPONENT_APPID"]}
        assert {t.app_id for t in tickets_b} == {body["appid"]}
        assert not {t.ticket for t in tickets_a} & {t.ticket for t in tickets_b}
        with pytest.raises(CryptoError):  # sealed with B's own key: A's cannot open it
            rb.requests[0].open(crypto_a)

        def token(appid, secret, ticket):
            answer = requests.post(
                f"{url}/cgi-bin/{TOKEN_API}",
                json={
                    "component_appid": appid,
                    "component_appsecret": secret,
                    "component_verify_ticket": ticket,
                },
                timeout=30,
            )
            return answer.json()

        a_secret = app.config["WECHAT_COMPONENT_APPSECRET"]
        a_appid = app.config["WECHAT_COMPONENT_APPID"]
        assert "component_access_token" in token(a_appid, a_secret, tickets_a[-1].ticket)
        assert "component_access_token" in token(
            body["appid"], body["secret"], tickets_b[-1].ticket
        )
        assert error_of(token(body["appid"], body["secret"], tickets_a[-1].ticket)) == 61006
        assert error_of(token(body["appid"], a_secret, tickets_b[-1].ticket)) == 40125
        assert error_of(token(a_appid, body["secret"], tickets_a[-1].ticket)) == 40125
    finally:
        app.extensions["sandbox"].ticket_thread.stop.set()
        server.shutdown()
    time.sleep(0.1)


def test_component_tokens_and_pushed_tickets_belong_to_one_platform(sandbox, two, ra, rb):
    a, b = two["a"], two["b"]
    ticket_a, ticket_b = sandbox.push_ticket(), sandbox.push_ticket(component_appid=b)
    sandbox.flush()
    assert [t.ticket for t in events(ra, two["crypto_a"])] == [ticket_a]
    assert [t.ticket for t in events(rb, two["crypto_b"])] == [ticket_b]
    assert [d["info_type"] for d in sandbox.deliveries()] == ["component_verify_ticket"]
    state_b = sandbox.state(component_appid=b)
    assert state_b["platform"]["appid"] == b and state_b["ticket"]["value"] == ticket_b
    assert state_b["deliveries"][0]["url"] == rb.event_url

    token_a, token_b = sandbox.component_token(), sandbox.component_token(component_appid=b)
    code_b = sandbox.pre_auth_code(token_b, b)
    assert code_b.startswith("preauthcode@@@")
    # A token works for its own platform only.
    wrong = sandbox.wechat(
        "component/api_create_preauthcode", {"component_appid": a}, token=token_b
    )
    assert error_of(wrong) == 61011
    # Another environment refreshing A's token kills A's tokens, not B's.
    sandbox.set_faults(foreign_refresh=True)
    body_a, body_b = {"component_appid": a}, {"component_appid": b}
    assert error_of(sandbox.wechat("component/api_create_preauthcode", body_a, token=token_a)) == (
        40001
    )
    assert "pre_auth_code" in sandbox.wechat(
        "component/api_create_preauthcode", body_b, token=token_b
    )
    calls_a, calls_b = sandbox.api_calls(), sandbox.state(component_appid=b)["api_calls"]
    assert calls_b == {"api_component_token": 1, "api_create_preauthcode": 3}
    assert calls_a == {"api_component_token": 1, "api_create_preauthcode": 1}


# --- one account, two platforms ----------------------------------------------------------------


def test_one_account_authorized_to_both_platforms_keeps_two_grants(sandbox, two, ra, rb):
    a, b = two["a"], two["b"]
    account = sandbox.account(scenario="fresh", type="official_account")
    sandbox.configure(initiating_domain=A_DOMAIN)
    code_a = authorize_via_pages(sandbox, a, A_DOMAIN, account, [1, 2, 3])
    code_b = authorize_via_pages(sandbox, b, B_DOMAIN, account, [1, 15])
    token_a, token_b = sandbox.component_token(), sandbox.component_token(component_appid=b)
    # A code is exchanged by its own platform only.
    assert error_of(query_auth(sandbox, b, token_b, code_a)) == 61009
    info_a = query_auth(sandbox, a, token_a, code_a)["authorization_info"]
    info_b = query_auth(sandbox, b, token_b, code_b)["authorization_info"]
    assert info_a["authorizer_appid"] == info_b["authorizer_appid"] == account["appid"]
    assert sets_of(info_a) == {1, 2, 3} and sets_of(info_b) == {1, 15}
    assert info_a["authorizer_refresh_token"] != info_b["authorizer_refresh_token"]
    assert info_a["authorizer_access_token"] != info_b["authorizer_access_token"]
    sandbox.flush()
    pushed_a = [e for e in events(ra, two["crypto_a"]) if isinstance(e, Authorized)]
    pushed_b = [e for e in events(rb, two["crypto_b"]) if isinstance(e, Authorized)]
    assert [(e.app_id, e.authorizer_appid) for e in pushed_a] == [(a, account["appid"])]
    assert [(e.app_id, e.authorizer_appid) for e in pushed_b] == [(b, account["appid"])]
    for appid, token in ((a, token_a), (b, token_b)):
        listed = sandbox.wechat(
            "component/api_get_authorizer_list", {"component_appid": appid}, token=token
        )
        assert account["appid"] in {item["authorizer_appid"] for item in listed["list"]}
    seen = {g["component_appid"]: g for g in sandbox.state(component_appid=b)["authorizations"]}
    assert set(seen) == {b}
    mine = next(x for x in sandbox.state()["accounts"] if x["appid"] == account["appid"])
    assert sorted(mine["authorized_platforms"]) == sorted([a, b])
    assert mine["foreign_providers"] == account["foreign_providers"] + 1  # B, seen from A
    dashboard = requests.get(f"{sandbox.url}/sandbox/", timeout=30).text
    assert f'data-appid="{account["appid"]}" data-platform="{a}"' in dashboard
    assert f'data-appid="{account["appid"]}" data-platform="{b}"' in dashboard
    assert f'<tr data-platform="{b}"' in dashboard and "乙平台" in dashboard

    # Revoking on A leaves B's grant, refresh token and tokens working.
    sandbox.revoke(account["appid"])
    refresh = {
        appid: sandbox.wechat(
            "component/api_authorizer_token",
            {
                "component_appid": appid,
                "authorizer_appid": account["appid"],
                "authorizer_refresh_token": info["authorizer_refresh_token"],
            },
            token=token,
        )
        for appid, token, info in ((a, token_a, info_a), (b, token_b, info_b))
    }
    assert error_of(refresh[a]) == 61003
    assert refresh[b]["authorizer_refresh_token"] == info_b["authorizer_refresh_token"]
    details = sandbox.wechat(
        "component/api_get_authorizer_info",
        {"component_appid": b, "authorizer_appid": account["appid"]},
        token=token_b,
    )
    assert sets_of(details["authorization_info"]) == {1, 15}
    sandbox.flush()
    assert [e.authorizer_appid for e in events(ra, two["crypto_a"]) if isinstance(e, Unauthorized)]
    assert not [e for e in events(rb, two["crypto_b"]) if isinstance(e, Unauthorized)]
    grants = {g["component_appid"]: g["status"] for g in _grants_of(sandbox, account["appid"])}
    assert grants == {a: "revoked", b: "active"}
    # The security assistant shows (and revokes) the grant that is left, B's.
    assistant = requests.get(f"{sandbox.url}/sandbox/assistant/{account['admin']}", timeout=30)
    assert f'data-platform="{b}"' in assistant.text and f'data-platform="{a}"' not in assistant.text
    sandbox.revoke(account["appid"], component_appid=b)
    assert {g["status"] for g in _grants_of(sandbox, account["appid"])} == {"revoked"}


def _grants_of(sandbox, appid: str) -> list[dict]:
    found = []
    for platform in sandbox.state()["platforms"]:
        state = sandbox.state(component_appid=platform["appid"])
        found += [g for g in state["authorizations"] if g["authorizer_appid"] == appid]
    return found


# --- WeChat's limits across platforms ----------------------------------------------------------


def test_a_16th_provider_is_refused_counting_every_platform(sandbox, ra):
    account = sandbox.account(scenario="shared")
    foreign = account["foreign_providers"]
    sets = account["offered_permission_set_ids"][:1]
    platforms = [sandbox.component_appid]
    for _ in range(15 - foreign):  # with the default one: one platform too many
        platforms.append(
            sandbox.add_platform(**platform_body(ra, initiating_domain=A_DOMAIN))["appid"]
        )
    for appid in platforms[:-1]:
        code = sandbox.pre_auth_code(sandbox.component_token(appid), appid)
        sandbox.consent(code, account["admin"], account["appid"], sets, component_appid=appid)
    last = platforms[-1]
    seen = next(
        x for x in sandbox.state(component_appid=last)["accounts"] if x["appid"] == account["appid"]
    )
    assert seen["foreign_providers"] == 15
    # The phone page shows the account greyed out, with WeChat's reason; confirming fails.
    phone = Phone(sandbox)
    url = phone.open_link(last, A_DOMAIN, sandbox.component_token(last))
    assert phone.accounts(url, account["admin"])[account["appid"]] is False
    refused = phone.consent(url, account["admin"], account["appid"], sets)
    assert refused.status_code == 422 and "15" in refused.text
    code = sandbox.pre_auth_code(sandbox.component_token(last), last)
    answer = sandbox.consent(
        code, account["admin"], account["appid"], sets, component_appid=last, expect=400
    )
    assert answer["error"] == "provider_limit"
    # Revoking one platform frees a place.
    sandbox.revoke(account["appid"], component_appid=platforms[1])
    code = sandbox.pre_auth_code(sandbox.component_token(last), last)
    granted = sandbox.consent(code, account["admin"], account["appid"], sets, component_appid=last)
    assert granted["info_type"] == "authorized" and granted["component_appid"] == last


def test_an_exclusive_set_held_by_one_platform_is_refused_to_the_other(sandbox, two):
    a, b = two["a"], two["b"]
    account = sandbox.account(scenario="fresh", type="official_account")
    sandbox.configure(initiating_domain=A_DOMAIN)
    authorize_via_pages(sandbox, a, A_DOMAIN, account, [1, 4])  # 4 web services: exclusive
    seen_from_b = next(
        x for x in sandbox.state(component_appid=b)["accounts"] if x["appid"] == account["appid"]
    )
    assert seen_from_b["exclusive_held_elsewhere"] == [4]
    # B's page shows set 4 taken (greyed, naming the holder); a consent with it is refused.
    phone = Phone(sandbox)
    url = phone.open_link(b, B_DOMAIN, sandbox.component_token(b))
    page = phone.get(url, wechat_user=account["admin"], account=account["appid"])
    held = re.search(r'data-set="4">(.*?)</label>', page.text, re.S).group(1)
    assert " disabled" in held and a in held
    assert re.search(r'data-set="1">\s*<input[^>]*checked', page.text)
    refused = phone.consent(url, account["admin"], account["appid"], [1, 4])
    assert refused.status_code == 422 and "exclusive sets held by another platform" in refused.text
    code = sandbox.pre_auth_code(sandbox.component_token(b), b)
    answer = sandbox.consent(
        code, account["admin"], account["appid"], [1, 4], component_appid=b, expect=400
    )
    assert answer["error"] == "exclusive_held"
    granted = sandbox.consent(code, account["admin"], account["appid"], [1], component_appid=b)
    assert granted["component_appid"] == b
    # Once A gives set 4 up, B may take it.
    sandbox.update(account["appid"], [1])
    changed = sandbox.update(account["appid"], [1, 4], component_appid=b)
    assert changed["changed"] is True and changed["permission_set_ids"] == [1, 4]
    refused = sandbox.control(
        "update",
        {"authorizer_appid": account["appid"], "permission_set_ids": [1, 4]},
        expect=400,
    )
    assert refused["error"] == "exclusive_held"


# --- testing before release --------------------------------------------------------------------


def test_a_testing_platform_admits_only_the_accounts_on_its_test_list(sandbox, two):
    b = two["b"]
    listed = sandbox.account(scenario="fresh", type="official_account")
    other = sandbox.account(scenario="fresh", type="mini_program")
    assert listed["admin"] == other["admin"]
    platform = sandbox.release(b, state="testing", test_accounts=[listed["appid"]])
    assert platform["release_state"] == "testing" and platform["test_accounts"] == [listed["appid"]]
    phone = Phone(sandbox)
    url = phone.open_link(b, B_DOMAIN, sandbox.component_token(b))
    shown = phone.accounts(url, listed["admin"])
    assert shown[listed["appid"]] is True and shown[other["appid"]] is False
    assert UNRELEASED in phone.get(url, wechat_user=other["admin"]).text
    refused = phone.get(url, wechat_user=other["admin"], account=other["appid"])
    assert refused.status_code == 403 and UNRELEASED in refused.text
    english = phone.get(url, wechat_user=other["admin"], account=other["appid"], lang="en")
    assert english.status_code == 403 and "awaits its network-wide release" in english.text
    code = sandbox.pre_auth_code(sandbox.component_token(b), b)
    answer = sandbox.consent(
        code, other["admin"], other["appid"], [17], component_appid=b, expect=400
    )
    assert answer["error"] == "not_test_account" and answer["message"] == UNRELEASED
    assert answer["errcode"] == 61028 and answer["errmsg"].startswith("component is unpublished")
    assert authorize_via_pages(sandbox, b, B_DOMAIN, listed, [1, 2])
    # The original id (gh_…) on the list works too, as on WeChat's console.
    sandbox.release(b, test_accounts=[listed["appid"], other["user_name"]])
    code = sandbox.pre_auth_code(sandbox.component_token(b), b)
    assert sandbox.consent(code, other["admin"], other["appid"], [17], component_appid=b)
    # After the release everyone may authorize.
    newcomer = sandbox.account(scenario="shared", type="official_account")
    released = sandbox.release(b, state="released")
    assert released["release_state"] == "released" and released["released_at"]
    code = sandbox.pre_auth_code(sandbox.component_token(b), b)
    assert sandbox.consent(code, newcomer["admin"], newcomer["appid"], [1], component_appid=b)
    # The default platform was never in testing.
    assert sandbox.state()["platform"]["release_state"] == "released"


# --- the release check per platform ------------------------------------------------------------


class FakePlatform:
    """Answers the release check as a correct platform with the given keys and credentials."""

    def __init__(self, sandbox, component_appid: str, secret: str, box: MessageCrypto):
        self.sandbox, self.appid, self.box = sandbox, component_appid, box
        self.client = ComponentClient(component_appid, secret, api_base=sandbox.url, retries=0)
        self.threads: list[threading.Thread] = []

    def __call__(self, request):
        message = parse_message(request.open(self.box))
        if isinstance(message, TextMessage) and message.content.startswith("QUERY_AUTH_CODE:"):
            code = message.content.split(":", 1)[1]
            thread = threading.Thread(target=self._answer, args=(code, message.from_user_name))
            thread.start()
            self.threads.append(thread)
            return ""
        content = (
            message.content + "_callback"
            if isinstance(message, TextMessage)
            else message.event + "from_callback"
        )
        reply = build_text_reply_xml(message, content, message.create_time)
        return self.box.encrypt_reply(reply, request.query["timestamp"], request.query["nonce"])

    def _answer(self, code: str, openid: str) -> None:
        ticket = self.sandbox.push_ticket(component_appid=self.appid)
        token = self.client.component_token(ticket).component_access_token
        info = self.client.query_auth(token, code)
        self.client.send_custom_message(info.authorizer_access_token, openid, f"{code}_from_api")


def test_the_release_check_runs_per_platform_with_its_own_url_and_keys(sandbox, two, ra, rb):
    a, b, body = two["a"], two["b"], two["body"]
    ra.default_reply = FakePlatform(sandbox, a, sandbox.component_secret, two["crypto_a"])
    rb.default_reply = FakePlatform(sandbox, b, body["secret"], two["crypto_b"])
    sandbox.release(b, state="testing")
    report_b = sandbox.release_check(component_appid=b, wait_seconds=5, publish=True)
    assert report_b["passed"] and report_b["published"], report_b
    assert report_b["component_appid"] == b
    assert {r.path for r in rb.requests if r.path.startswith("/wechat/messages/")} == {
        "/wechat/messages/wx570bc396a51b8ff8",
        "/wechat/messages/wxd101a85aa106f53e",
    }
    assert sandbox.state(component_appid=b)["platform"]["release_state"] == "released"
    messages_to_a = [r for r in ra.requests if r.path.startswith("/wechat/messages/")]
    assert messages_to_a == []
    report_a = sandbox.release_check(wait_seconds=5)
    assert report_a["passed"] and report_a["component_appid"] == a
    assert sandbox.state()["release_check"]["component_appid"] == a
    assert sandbox.state(component_appid=b)["release_check"]["component_appid"] == b
    # A platform that answers with another platform's keys fails its own check.
    rb.default_reply = FakePlatform(sandbox, b, body["secret"], two["crypto_a"])
    failed = sandbox.release_check(
        component_appid=b, wait_seconds=0.5, appids=["wx570bc396a51b8ff8"]
    )
    assert not failed["passed"]
    assert sandbox.state(component_appid=b)["release_check"]["passed"] is False
    for fake in (ra.default_reply, rb.default_reply):
        for thread in fake.threads:
            thread.join(timeout=10)


# --- control calls with and without component_appid --------------------------------------------


def test_control_calls_act_on_the_named_platform_or_the_default(sandbox, two, ra, rb):
    a, b = two["a"], two["b"]
    token_a, token_b = sandbox.component_token(), sandbox.component_token(component_appid=b)
    body_a, body_b = {"component_appid": a}, {"component_appid": b}
    # Faults: B's fail B's calls only.
    sandbox.set_faults(component_appid=b, endpoints={"*": {"http_status": 502}})
    broken = requests.post(
        f"{sandbox.url}/cgi-bin/component/api_create_preauthcode",
        params={"component_access_token": token_b},
        json=body_b,
        timeout=30,
    )
    assert broken.status_code == 502
    assert "pre_auth_code" in sandbox.wechat(
        "component/api_create_preauthcode", body_a, token=token_a
    )
    assert sandbox.state()["faults"] == {"endpoints": {}, "pushes": {}}
    assert sandbox.state(component_appid=b)["faults"]["endpoints"]["*"]["http_status"] == 502
    answer = requests.get(
        f"{sandbox.url}/sandbox/api/faults", params={"component_appid": b}, timeout=30
    )
    assert answer.json()["endpoints"]["*"]["http_status"] == 502
    sandbox.set_faults(component_appid=b, clear=True)
    # Quotas per platform.
    sandbox.quotas(component_appid=b, api_create_preauthcode=1)
    assert "pre_auth_code" in sandbox.wechat(
        "component/api_create_preauthcode", body_b, token=token_b
    )
    assert (
        error_of(sandbox.wechat("component/api_create_preauthcode", body_b, token=token_b)) == 45009
    )
    assert "pre_auth_code" in sandbox.wechat(
        "component/api_create_preauthcode", body_a, token=token_a
    )
    sandbox.quotas(component_appid=b, api_create_preauthcode=None)
    # The IP whitelist per platform.
    platform_b = sandbox.configure(component_appid=b, ip_whitelist=["10.0.0.1"])
    assert platform_b["appid"] == b and platform_b["ip_whitelist"] == ["10.0.0.1"]
    assert error_of(sandbox.wechat("component/api_get_authorizer_list", body_b, token=token_b)) == (
        61004
    )
    assert sandbox.state()["platform"]["ip_whitelist"] == []
    sandbox.configure(component_appid=b, ip_whitelist=[])
    # Paused tickets per platform: B's scheduled push is skipped, A's is not.
    sandbox.set_faults(component_appid=b, pushes={"pause_tickets": True})
    from app.sandbox import grants, platforms
    from app.sandbox.models import db

    with sandbox.app.app_context():
        assert grants.push_ticket(platforms.require(b), scheduled=True) is None
        assert grants.push_ticket(platforms.require(a), scheduled=True) is not None
        db.session.commit()
    # Consent, update, user messages: the grant of the platform named (default: A).
    account = sandbox.account(scenario="fresh", type="official_account")
    code_b = sandbox.pre_auth_code(token_b, b)
    refused = sandbox.consent(
        code_b, account["admin"], account["appid"], [1], component_appid=a, expect=400
    )
    assert refused["error"] == "pre_auth_code_invalid"
    granted = sandbox.consent(code_b, account["admin"], account["appid"], [1, 2])
    assert granted["component_appid"] == b  # the code names its platform
    assert (
        sandbox.control(
            "update", {"authorizer_appid": account["appid"], "permission_set_ids": [1]}, expect=400
        )["error"]
        == "not_authorized"
    )
    assert sandbox.update(account["appid"], [1], component_appid=b)["changed"] is True
    no_grant = sandbox.user_message(account["appid"], content="你好", expect=400)
    assert no_grant["error"] == "not_authorized" and no_grant["errcode"] == 61003
    sent = sandbox.user_message(account["appid"], content="你好", component_appid=b)
    assert sent["http_status"] == 200
    (message,) = [r for r in rb.requests if r.path == f"/wechat/messages/{account['appid']}"]
    assert parse_message(message.open(two["crypto_b"])).content == "你好"
    assert [m["content"] for m in sandbox.state(component_appid=b)["user_messages"]] == ["你好"]
    assert sandbox.state()["user_messages"] == []
    # The clock is the world's; an unknown platform is refused everywhere.
    assert sandbox.clock(advance_seconds=0)["offset_seconds"] == 0
    assert (
        sandbox.control("clock", {"component_appid": b, "advance_seconds": 1})["offset_seconds"]
        == 1
    )
    for path, body in (
        ("push-ticket", {}),
        ("faults", {"clear": True}),
        ("quotas", {"api_query_auth": 1}),
        ("platform", {"name": "x"}),
        ("revoke", {"authorizer_appid": account["appid"]}),
        ("clock", {"advance_seconds": 1}),
        ("user-message", {"authorizer_appid": account["appid"], "content": "x"}),
        ("release-check", {}),
    ):
        answer = sandbox.control(
            path, {**body, "component_appid": "wx0000000000000000"}, expect=400
        )
        assert answer["error"] == "unknown_platform", path
    unknown = requests.get(
        f"{sandbox.url}/sandbox/api/state", params={"component_appid": "wxnope"}, timeout=30
    )
    assert unknown.status_code == 400 and unknown.json()["error"] == "unknown_platform"
    missing = sandbox.control(
        "platforms/wx0000000000000000/release", {"state": "testing"}, expect=400
    )
    assert missing["error"] == "unknown_platform"
    # Both platforms in the state, the default first; the old single-platform keys are A's.
    state = sandbox.state()
    assert [p["appid"] for p in state["platforms"]] == [a, b]
    assert [p["default"] for p in state["platforms"]] == [True, False]
    assert state["platform"]["appid"] == a and state["platforms"][1]["name"] == "乙平台"
    assert "secret" not in state["platforms"][1] and "encoding_aes_key" not in state["platforms"][1]


def test_adding_a_platform_is_validated(sandbox, rb):
    good = platform_body(rb)
    cases = {
        "missing_field": {k: v for k, v in good.items() if k != "secret"},
        "bad_appid": {**good, "appid": "platform-b"},
        "platform_exists": {**good, "appid": sandbox.component_appid},
        "bad_value": {**good, "encoding_aes_key": "short"},
        "unknown_sets": {**good, "permission_set_ids": [1, 9999]},
        "unknown_field": {**good, "colour": "blue"},
    }
    for error, body in cases.items():
        answer = sandbox.control("platforms", body, expect=400)
        assert answer["error"] == error, (error, answer)
        assert answer["message"]
    for key, value in (
        ("event_url", "ftp://x/"),
        ("initiating_domain", "https://b.test/"),
        ("token", "a b"),
        ("release_state", "beta"),
        ("test_accounts", "wx1"),
        ("permission_set_ids", []),
    ):
        answer = sandbox.control("platforms", {**good, key: value}, expect=400)
        assert answer["error"] in ("bad_value", "missing_field"), (key, answer)
    assert len(sandbox.state()["platforms"]) == 1  # nothing was added
    added = sandbox.add_platform(**good)
    assert added["release_state"] == "released" and added["test_accounts"] == []
    again = sandbox.control("platforms", good, expect=400)
    assert again["error"] == "platform_exists"
    # WeChat's release-test accounts are authorized to every platform, with its sets.
    state = sandbox.state(component_appid=good["appid"])
    assert len([g for g in state["authorizations"] if g["status"] == "active"]) == 10


# --- an older database file --------------------------------------------------------------------


def test_a_database_from_before_several_platforms_keeps_its_grants(tmp_path):
    path = tmp_path / "old.sqlite"
    config = {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}", "SANDBOX_TICKET_INTERVAL": 0}
    client = create_app(config).test_client()
    account = next(
        x for x in client.get("/sandbox/api/state").json["accounts"] if x["scenario"] == "fresh"
    )
    with sqlite3.connect(path) as connection:  # as the file was before several platforms
        connection.executescript(
            """
            DROP TABLE "authorization";
            CREATE TABLE "authorization" (
                id INTEGER NOT NULL PRIMARY KEY, account_id INTEGER NOT NULL UNIQUE,
                status VARCHAR(16) NOT NULL, permission_set_ids JSON NOT NULL,
                refresh_token VARCHAR(128) NOT NULL, previous_refresh_token VARCHAR(128),
                previous_refresh_until FLOAT, exchanged BOOLEAN NOT NULL,
                authorized_at FLOAT NOT NULL, updated_at FLOAT NOT NULL, revoked_at FLOAT,
                FOREIGN KEY(account_id) REFERENCES account (id));
            DROP TABLE ticket;
            CREATE TABLE ticket (id INTEGER NOT NULL PRIMARY KEY,
                value VARCHAR(128) NOT NULL UNIQUE, issued_at FLOAT NOT NULL);
            """
        )
        account_id = connection.execute(
            "SELECT id FROM account WHERE appid = ?", (account["appid"],)
        ).fetchone()[0]
        connection.execute(
            'INSERT INTO "authorization" (account_id, status, permission_set_ids, refresh_token,'
            " exchanged, authorized_at, updated_at) VALUES (?, 'active', '[1, 2]',"
            " 'refreshtoken@@@old', 1, 1, 1)",
            (account_id,),
        )
        connection.execute("INSERT INTO ticket (value, issued_at) VALUES ('ticket@@@old', 1)")
    app = create_app(config)
    client = app.test_client()
    state = client.get("/sandbox/api/state").json
    (grant,) = state["authorizations"]
    assert grant["authorizer_appid"] == account["appid"]
    assert grant["refresh_token"] == "refreshtoken@@@old"
    assert grant["component_appid"] == app.config["WECHAT_COMPONENT_APPID"]
    assert state["ticket"]["value"] == "ticket@@@old"
    # The same account can now be granted to a second platform as well.
    receiver = Receiver()
    try:
        body = platform_body(receiver)
        assert client.post("/sandbox/api/platforms", json=body).status_code == 201
        ticket = client.post("/sandbox/api/push-ticket", json={"component_appid": body["appid"]})
        token = client.post(
            f"/cgi-bin/{TOKEN_API}",
            json={
                "component_appid": body["appid"],
                "component_appsecret": body["secret"],
                "component_verify_ticket": ticket.json["ticket"],
            },
        ).json["component_access_token"]
        code = client.post(
            "/cgi-bin/component/api_create_preauthcode",
            query_string={"component_access_token": token},
            json={"component_appid": body["appid"]},
        ).json["pre_auth_code"]
        consent = client.post(
            "/sandbox/api/consent",
            json={
                "pre_auth_code": code,
                "wechat_user": account["admin"],
                "authorizer_appid": account["appid"],
                "permission_set_ids": [1],
            },
        )
        assert consent.status_code == 200, consent.json
    finally:
        receiver.close()
    with sqlite3.connect(path) as connection:
        rows = connection.execute(
            'SELECT platform_id FROM "authorization" WHERE account_id = ?', (account_id,)
        ).fetchall()
    assert len(rows) == 2 and None not in {r[0] for r in rows}
