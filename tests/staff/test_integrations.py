"""The integrations page: API keys and relay routes together; routes created, edited, paused,
test-sent and deleted through the pages (CSRF, roles), secrets shown once, counts never content."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select
from wechatpy import parse_message
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature

from app.extensions import db
from app.models import AuditEntry, RelayRoute, StaffRole
from app.services.custody import apikeys
from tests import factories
from tests.conftest import AuthActions
from tests.staff.conftest import make_account, post
from tests.staff.relay_rows import make_delivery, make_route

EN = {"Accept-Language": "en"}
ZH = {"Accept-Language": "zh-CN"}
TOKEN = "handlerToken123"
SECRET = "a-json-secret-of-some-length"


def signed_in(app, role: StaffRole):
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    AuthActions(client).login(factories.make_staff(staff_role=role).email)
    return client


def route_form(**overrides) -> dict:
    return {
        "name": "CRM bot",
        "url": "https://crm.example.com/wechat/in?api_key=url-query-secret",
        "format": "wechat-xml",
        "mode": "async",
        "scope": "all",
        "msg_types": "",
        **overrides,
    }


def only_route() -> RelayRoute:
    return db.session.scalar(select(RelayRoute))


def audit_actions(route_id) -> list[str]:
    query = select(AuditEntry.action).where(AuditEntry.target_id == str(route_id))
    return list(db.session.scalars(query.order_by(AuditEntry.id)))


def test_one_page_lists_api_keys_and_routes_without_url_queries(staff_client):
    apikeys.create_api_key("billing service", ["tokens:read"])
    merchant = factories.make_merchant(name="西湖茶社")
    make_route(name="Everyone", url="https://a.example.com/in?sig=query-secret-1")
    make_route(name="Tea", mode="reply", merchant_id=merchant.id, msg_types=["text", "event"],
               paused=True)  # fmt: skip
    make_route(
        name="One", format="json", authorizer_appid="wxabc123", url="http://b.example:8080/x"
    )
    html = staff_client.get("/staff/integrations", headers=EN).text
    assert 'href="/staff/integrations" aria-current="page"' in html
    assert "billing service" in html and 'href="/staff/api-keys"' in html
    assert "https://a.example.com/in" in html and "query-secret" not in html
    assert "http://b.example:8080/x" in html
    assert "All accounts" in html and "Accounts of 西湖茶社" in html and "Account wxabc123" in html
    assert "<code>text</code> <code>event</code>" in html and "All types" in html
    assert "Paused" in html and "Running" in html and "Passive reply" in html
    assert "WeChat plaintext mode (XML)" in html and "JSON, signed like the grant webhooks" in html


def test_the_page_in_chinese(staff_client):
    route = make_route(mode="reply")
    make_delivery(route, make_account(), status="late", duration_ms=4000)
    html = staff_client.get("/staff/integrations", headers=ZH).text
    for words in ("集成", "消息转发路由", "令牌接口调用方", "被动回复", "微信明文模式", "全部账号",
                  "超时", "4,000 毫秒", "新建路由"):  # fmt: skip
        assert words in html, words
    page = staff_client.get(f"/staff/integrations/relay/{route.id}", headers=ZH).text
    for words in ("最近的错误", "死信", "回复耗时 p99", "发送测试消息", "编辑", "暂停", "删除"):
        assert words in page, words
    form = staff_client.get("/staff/integrations/relay/new", headers=ZH).text
    assert "新建转发路由" in form and "令牌（微信明文模式）" in form and "留空则自动生成" in form


def test_create_a_route_whose_generated_token_is_shown_once(staff_client):
    page = staff_client.get("/staff/integrations/relay/new").text
    assert 'type="password"' in page and 'autocomplete="new-password"' in page
    response = post(staff_client, "/staff/integrations/relay", route_form())
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    route = only_route()
    assert route.format == "wechat-xml" and route.token and route.merchant_id is None
    assert route.token in response.text and "shown only once" in response.text
    for url in (f"/staff/integrations/relay/{route.id}", "/staff/integrations",
                f"/staff/integrations/relay/{route.id}/edit", "/staff/audit"):  # fmt: skip
        html = staff_client.get(url).text
        assert route.token not in html and "url-query-secret" not in html, url
    assert "Set (never shown)" in staff_client.get(f"/staff/integrations/relay/{route.id}").text
    assert audit_actions(route.id) == ["relay_route.created"]


def test_a_typed_secret_is_never_rendered(staff_client):
    merchant = factories.make_merchant()
    data = route_form(format="json", secret=SECRET, scope="merchant", merchant_id=merchant.id,
                      msg_types="text, event.subscribe")  # fmt: skip
    response = post(staff_client, "/staff/integrations/relay", data)
    route = only_route()
    assert response.status_code == 303
    assert response.headers["Location"] == f"/staff/integrations/relay/{route.id}"
    assert (route.secret, route.merchant_id, route.msg_types) == (
        SECRET,
        merchant.id,
        ["event.subscribe", "text"],
    )
    for url in (f"/staff/integrations/relay/{route.id}", "/staff/integrations",
                f"/staff/integrations/relay/{route.id}/edit"):  # fmt: skip
        assert SECRET not in staff_client.get(url, follow_redirects=True).text


def test_edit_keeps_a_blank_secret_and_changes_the_rest(staff_client):
    route = make_route(format="json", token=None, secret=SECRET, msg_types=["text"])
    form = staff_client.get(f"/staff/integrations/relay/{route.id}/edit").text
    assert SECRET not in form and 'value="text"' in form and "Leave blank to keep" in form
    data = route_form(name="Renamed", format="json", mode="async", secret="", scope="appid",
                      authorizer_appid="wxscoped01")  # fmt: skip
    response = post(staff_client, f"/staff/integrations/relay/{route.id}/edit", data)
    assert response.status_code == 303
    db.session.refresh(route)
    assert (route.name, route.secret, route.authorizer_appid, route.msg_types) == (
        "Renamed",
        SECRET,
        "wxscoped01",
        [],
    )
    post(staff_client, f"/staff/integrations/relay/{route.id}/edit",
         route_form(format="json", secret="another-secret-of-length"))  # fmt: skip
    db.session.refresh(route)
    assert route.secret == "another-secret-of-length" and route.authorizer_appid is None
    assert audit_actions(route.id) == ["relay_route.updated", "relay_route.updated"]


def test_a_format_change_shows_the_new_generated_credential_once(staff_client):
    route = make_route(format="json", token=None, secret=SECRET)
    response = post(staff_client, f"/staff/integrations/relay/{route.id}/edit",
                    route_form(format="wechat-xml"))  # fmt: skip
    db.session.refresh(route)
    assert response.status_code == 200 and route.secret is None and route.token
    assert route.token in response.text and response.headers["Cache-Control"] == "no-store"


def test_invalid_routes_are_refused_next_to_the_input(staff_client):
    answer = post(staff_client, "/staff/integrations/relay", route_form(scope="merchant"))
    assert answer.status_code == 422 and "whose accounts it serves" in answer.text
    answer = post(staff_client, "/staff/integrations/relay", route_form(url="ftp://files.example"))
    assert answer.status_code == 422 and 'id="url-error"' in answer.text
    answer = post(staff_client, "/staff/integrations/relay", route_form(token="x!"))
    assert answer.status_code == 422 and 'id="token-error"' in answer.text
    assert "x!" not in answer.text.split("<main")[1]
    answer = post(staff_client, "/staff/integrations/relay", route_form(msg_types="texts"))
    assert answer.status_code == 422 and "Unknown message type texts" in answer.text
    make_route(name="Existing reply", mode="reply")
    answer = post(staff_client, "/staff/integrations/relay", route_form(mode="reply"))
    assert answer.status_code == 422 and "Existing reply" in answer.text
    assert db.session.scalars(select(RelayRoute.name)).all() == ["Existing reply"]


def test_pause_resume_and_delete_through_confirmation(staff_client):
    route = make_route(name="Doomed")
    route_id = route.id
    make_delivery(route, make_account(), status="dead")
    base = f"/staff/integrations/relay/{route.id}"
    assert post(staff_client, f"{base}/pause").status_code == 303
    db.session.refresh(route)
    assert route.paused
    assert 'action="' + base + '/resume"' in staff_client.get(base).text
    post(staff_client, f"{base}/resume")
    db.session.refresh(route)
    assert not route.paused
    confirm = staff_client.get(f"{base}/delete").text
    assert "Delete route Doomed?" in confirm and "1 dead ones" in confirm
    assert staff_client.post(f"{base}/delete").status_code == 400  # no CSRF token
    assert post(staff_client, f"{base}/delete").headers["Location"] == "/staff/integrations"
    assert db.session.get(RelayRoute, route_id) is None
    assert audit_actions(route_id) == ["relay_route.paused", "relay_route.resumed",
                                       "relay_route.deleted"]  # fmt: skip


def test_roles_read_act_and_change(app):
    route = make_route()
    base = f"/staff/integrations/relay/{route.id}"
    viewer, operator, admin = (signed_in(app, r) for r in StaffRole)
    for client in (viewer, operator, admin):
        assert client.get("/staff/integrations").status_code == 200
        assert client.get(base).status_code == 200
    seen = viewer.get(base).text
    assert f"{base}/edit" not in seen and f"{base}/test" not in seen and "/pause" not in seen
    assert "/staff/api-keys" not in viewer.get("/staff/integrations").text
    acting = operator.get(base).text
    assert f"{base}/test" in acting and f"{base}/edit" not in acting
    assert operator.get(f"{base}/edit").status_code == 403
    assert operator.get("/staff/integrations/relay/new").status_code == 403
    assert f"{base}/edit" in admin.get(base).text
    assert "New route" in admin.get("/staff/integrations").text


def test_route_page_shows_counts_percentiles_errors_and_accounts_never_content(staff_client):
    route = make_route(mode="reply", token="tok123")
    shop = make_account(nick_name="茶叶小店")
    for ms in (10, 20, 30, 40, 1500):
        make_delivery(route, shop, status="delivered", duration_ms=ms)
    make_delivery(route, shop, status="late", duration_ms=4000, last_error="timeout")
    make_delivery(route, make_account(), status="failed", duration_ms=12, last_status_code=502,
                  last_error="HTTP 502")  # fmt: skip
    html = staff_client.get(f"/staff/integrations/relay/{route.id}").text
    assert "<strong>5</strong> Delivered" in html and "<strong>1</strong> Late" in html
    assert "<strong>1</strong> Failed" in html
    assert "Reply time p50</dt><dd>30 ms" in html and "Reply time p99</dt><dd>4,000 ms" in html
    assert "HTTP 502" in html and "502" in html and "timeout" in html
    assert "茶叶小店" in html and "Errors" in html
    assert "private words" not in html and "tok123" not in html
    account_page = staff_client.get(f"/staff/accounts/{shop.id}").text
    assert "Message relay" in account_page and route.name in account_page
    assert "private words" not in account_page


def test_dead_letters_are_listed_and_paged_with_htmx(staff_client, monkeypatch):
    from app.staff import integrations

    monkeypatch.setattr(integrations, "DEAD_PER_PAGE", 2)
    route, account = make_route(), make_account()
    dead = [make_delivery(route, account, status="dead", msg_type="event.subscribe", attempts=8,
                          last_error="connection error") for _ in range(3)]  # fmt: skip
    html = staff_client.get(f"/staff/integrations/relay/{route.id}").text
    assert f'id="dead-{dead[2].id}"' in html and f'id="dead-{dead[0].id}"' not in html
    assert "event.subscribe" in html and "connection error" in html
    older = f"/staff/integrations/relay/{route.id}?before={dead[1].id}"
    assert f'hx-get="{older}"' in html
    fragment = staff_client.get(older, headers={"HX-Request": "true", "HX-Target": "dead_letters"})
    text = fragment.text.lstrip()
    assert text.startswith('<div id="dead_letters">') and f'id="dead-{dead[0].id}"' in text


class Receiver:
    """A business service on a real local port, written with wechatpy's plaintext-mode helpers."""

    def __init__(self, status=200):
        self.status, self.bodies = status, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.bodies.append(body)
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                check_signature(TOKEN, query["signature"], query["timestamp"], query["nonce"])
                message = parse_message(body)
                reply = TextReply(message=message, content=f"echo: {message.content}").render()
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(reply.encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/wechat?secret=in-the-query"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    service = Receiver()
    yield service
    service.close()


def test_test_send_against_a_real_receiver(app, staff_client, receiver):
    route = make_route(mode="reply", token=TOKEN, url=receiver.url)
    html = post(staff_client, f"/staff/integrations/relay/{route.id}/test").text
    assert len(receiver.bodies) == 1 and b"Grantdesk test message" in receiver.bodies[0]
    assert "Status code</dt><dd>200" in html and "echo: Grantdesk test message" in html
    assert "Error</dt><dd>None" in html and " ms</dd>" in html
    fragment = post(staff_client, f"/staff/integrations/relay/{route.id}/test",
                    headers={"HX-Request": "true", "HX-Target": "test_result"}).text  # fmt: skip
    assert fragment.lstrip().startswith('<div id="test_result"') and "echo:" in fragment
    receiver.status = 500
    html = post(staff_client, f"/staff/integrations/relay/{route.id}/test").text
    assert "Status code</dt><dd>500" in html and "HTTP 500" in html and "No reply" in html


def test_test_send_to_a_closed_port_shows_the_error(staff_client):
    route = make_route(url="http://127.0.0.1:9/nothing")
    html = post(staff_client, f"/staff/integrations/relay/{route.id}/test").text
    assert "connection error" in html and "Status code</dt><dd>—" in html


def test_changes_need_the_csrf_token(staff_client):
    route = make_route()
    base = f"/staff/integrations/relay/{route.id}"
    for url in (f"{base}/pause", f"{base}/test", f"{base}/edit", "/staff/integrations/relay"):
        assert staff_client.post(url, data=route_form()).status_code == 400, url
    db.session.refresh(route)
    assert not route.paused and route.name != "CRM bot"


def test_the_url_query_stays_hidden_and_kept_on_edit(staff_client):
    route = make_route(url="https://crm.example.com/in?key=hidden-key")
    form = staff_client.get(f"/staff/integrations/relay/{route.id}/edit").text
    assert 'value="https://crm.example.com/in"' in form and "hidden-key" not in form
    data = route_form(url="https://crm.example.com/in", name="Kept", token="")
    assert post(staff_client, f"/staff/integrations/relay/{route.id}/edit", data).status_code == 303
    db.session.refresh(route)
    assert route.url == "https://crm.example.com/in?key=hidden-key" and route.name == "Kept"
    data = route_form(url="https://crm.example.com/new")
    post(staff_client, f"/staff/integrations/relay/{route.id}/edit", data)
    db.session.refresh(route)
    assert route.url == "https://crm.example.com/new"


def test_replay_one_dead_letter_moves_it_to_pending(staff_client):
    route, account = make_route(), make_account()
    dead = make_delivery(route, account, status="dead", attempts=8, last_error="HTTP 503")
    other = make_delivery(route, account, status="dead", attempts=8)
    base = f"/staff/integrations/relay/{route.id}"
    assert f'action="{base}/dead/{dead.id}/replay"' in staff_client.get(base).text
    answer = post(staff_client, f"{base}/dead/{dead.id}/replay")
    assert answer.status_code == 303 and answer.headers["Location"].endswith("#dead_letters")
    db.session.refresh(dead)
    db.session.refresh(other)
    assert (dead.status, dead.attempts) == ("pending", 0) and other.status == "dead"
    again = post(staff_client, f"{base}/dead/{dead.id}/replay", follow_redirects=True)
    assert "is not a dead letter any more" in again.text
    assert post(staff_client, f"/staff/integrations/relay/{make_route().id}/dead/{other.id}/replay"
                ).status_code == 404  # fmt: skip
    query = select(AuditEntry.action).where(AuditEntry.target_type == "relay_delivery")
    assert db.session.scalars(query).all() == ["relay.delivery_replayed"]


def test_replay_all_dead_letters_of_a_route_through_confirmation(staff_client):
    route, elsewhere, account = make_route(name="Shop CRM"), make_route(), make_account()
    dead = [make_delivery(route, account, status="dead", attempts=8) for _ in range(3)]
    kept = make_delivery(elsewhere, account, status="dead", attempts=8)
    base = f"/staff/integrations/relay/{route.id}"
    assert f'href="{base}/dead/replay"' in staff_client.get(base).text
    confirm = staff_client.get(f"{base}/dead/replay").text
    assert "Replay every dead letter of Shop CRM?" in confirm and "3 dead deliveries" in confirm
    answer = post(staff_client, f"{base}/dead/replay", follow_redirects=True)
    assert "3 dead deliveries are queued again." in answer.text
    assert {db.session.get(type(d), d.id).status for d in dead} == {"pending"}
    db.session.refresh(kept)
    assert kept.status == "dead"
    assert "No dead letters." in staff_client.get(base).text


def test_viewers_see_dead_letters_but_no_replay(app):
    route = make_route()
    make_delivery(route, make_account(), status="dead")
    base = f"/staff/integrations/relay/{route.id}"
    page = signed_in(app, StaffRole.VIEWER).get(base).text
    assert "Dead letter" in page and "/replay" not in page
    assert signed_in(app, StaffRole.OPERATOR).get(f"{base}/dead/replay").status_code == 200
