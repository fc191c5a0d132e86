"""Relay routes: validation, the one-reply-route rule, matching, audit without secrets."""

import json

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEntry, RelayDelivery, RelayMessage, RelayRoute
from app.services import clock
from app.services.relay import routes
from app.services.relay.routes import RouteError
from tests import factories
from tests.relay.conftest import make_account

URL = "https://svc.example.com/wechat"


def create(**overrides):
    values = {"name": "r", "url": URL, "format": "wechat-xml", "mode": "async", **overrides}
    return routes.create_route(**values)


def route_count() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(RelayRoute))


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"url": "ftp://svc.example.com/x"}, "url"),
        ({"url": "https:///no-host"}, "url"),
        ({"url": "svc.example.com/wechat"}, "url"),
        ({"url": "https://svc.example.com/a b"}, "url"),
        ({"url": "https://svc.example.com:99999/"}, "url"),
        ({"url": "https://" + "a" * 2050 + ".com/"}, "url"),
        ({"format": "xml"}, "format"),
        ({"mode": "sync"}, "mode"),
        ({"name": "n" * 121}, "name"),
        ({"merchant_id": 999_999}, "scope"),
        ({"merchant_id": "abc"}, "scope"),
        ({"authorizer_appid": "gh_notanappid"}, "scope"),
        ({"msg_types": ["txt"]}, "msg_types"),
        ({"msg_types": ["event.sub scribe"]}, "msg_types"),
        ({"msg_types": ["event."]}, "msg_types"),
        ({"msg_types": [3]}, "msg_types"),
        ({"token": "ab"}, "token"),
        ({"token": "has-dash"}, "token"),
        ({"token": "t" * 33}, "token"),
        ({"format": "json", "secret": "short"}, "secret"),
        ({"format": "json", "secret": "has a space in it, sadly"}, "secret"),
        ({"secret": "a-secret-for-json-only"}, "secret"),
        ({"format": "json", "token": "abc123"}, "token"),
    ],
)
def test_bad_routes_are_refused_with_the_field_at_fault(app, overrides, field):
    with pytest.raises(RouteError) as caught:
        create(**overrides)
    assert caught.value.field == field
    assert str(caught.value)  # a readable (English outside requests) message
    assert route_count() == 0


def test_both_scopes_at_once_are_refused(app):
    merchant = factories.make_merchant()
    with pytest.raises(RouteError, match="not both") as caught:
        create(merchant_id=merchant.id, authorizer_appid="wx0123456789abcdef")
    assert caught.value.field == "scope"


def test_errors_are_translated_in_requests(app):
    with app.test_request_context(headers={"Accept-Language": "zh-CN"}):
        with pytest.raises(RouteError) as caught:
            create(url="ftp://x")
        assert str(caught.value) == "请输入带主机名的 http:// 或 https:// 网址。"


def test_a_valid_route_is_normalised_and_credentials_are_generated_once(app):
    merchant = factories.make_merchant()
    route = create(name="  My   service ", msg_types="TEXT, event.SUBSCRIBE,text event",
                   merchant_id=str(merchant.id), url=" " + URL + " ")  # fmt: skip
    assert route.name == "My service" and route.url == URL
    assert route.msg_types == ["event", "event.subscribe", "text"]
    assert route.merchant_id == merchant.id and route.authorizer_appid is None
    assert route.generated_credential == route.token and len(route.token) == 32
    assert route.token.isalnum() and route.secret is None
    json_route = create(format="json", name="")
    assert json_route.name == "svc.example.com"
    assert json_route.generated_credential == json_route.secret and json_route.token is None
    given = create(token="mytoken123")
    assert given.token == "mytoken123" and given.generated_credential is None


def test_changing_the_format_swaps_the_credential(app):
    route = create(token="mytoken123")
    routes.update_route(route, format="json")
    assert route.token is None and route.secret == route.generated_credential
    routes.update_route(route, format="wechat-xml", token="another1")
    assert (route.token, route.secret, route.generated_credential) == ("another1", None, None)
    routes.update_route(route, name="renamed")  # token=None keeps it
    assert route.token == "another1" and route.name == "renamed"


def test_update_validates_the_whole_route_and_writes_nothing_when_refused(app):
    route = create()
    with pytest.raises(RouteError):
        routes.update_route(route, url="nope")
    with pytest.raises(TypeError):
        routes.update_route(route, paused=True)
    db.session.rollback()
    db.session.refresh(route)
    assert route.url == URL


def test_every_change_is_audited_without_secrets(app):
    staff = factories.make_staff()
    route = create(url=URL + "?key=hidden-query", token="audittoken1", actor=staff)
    routes.update_route(route, token="audittoken2", msg_types=["image"], actor=staff)
    routes.set_paused(route, True, actor=staff)
    routes.set_paused(route, False, actor=staff)
    routes.delete_route(route, actor="cli")
    entries = list(db.session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
    assert [e.action for e in entries] == [
        "relay_route.created", "relay_route.updated", "relay_route.paused",
        "relay_route.resumed", "relay_route.deleted",
    ]  # fmt: skip
    assert entries[0].actor_user_id == staff.id and entries[-1].actor == "cli"
    assert {e.target_id for e in entries} == {str(route.id)}
    assert entries[1].details["changed"] == ["msg_types", "token"]
    dumped = json.dumps([e.details for e in entries])
    for secret in ("audittoken1", "audittoken2", "hidden-query"):
        assert secret not in dumped
    assert entries[0].details["url"] == URL


# --- one reply route per message --------------------------------------------------------------


def scopes(merchants, account):
    return {
        "all": {},
        "merchant_a": {"merchant_id": merchants[0].id},
        "merchant_b": {"merchant_id": merchants[1].id},
        "account_in_a": {"authorizer_appid": account.appid},
        "unknown_account": {"authorizer_appid": "wxnotyetknown0001"},
    }


OVERLAPPING_SCOPES = {
    frozenset({"all"}), frozenset({"merchant_a"}), frozenset({"merchant_b"}),
    frozenset({"account_in_a"}), frozenset({"unknown_account"}),
    frozenset({"all", "merchant_a"}), frozenset({"all", "merchant_b"}),
    frozenset({"all", "account_in_a"}), frozenset({"all", "unknown_account"}),
    frozenset({"merchant_a", "account_in_a"}),
}  # fmt: skip


@pytest.mark.parametrize("first", ["all", "merchant_a", "merchant_b", "account_in_a",
                                   "unknown_account"])  # fmt: skip
@pytest.mark.parametrize("second", ["all", "merchant_a", "merchant_b", "account_in_a",
                                    "unknown_account"])  # fmt: skip
def test_reply_routes_with_overlapping_scopes_are_refused(app, first, second):
    merchants = [factories.make_merchant(), factories.make_merchant()]
    account = make_account(merchants[0])
    scope = scopes(merchants, account)
    existing = create(mode="reply", **scope[first])
    if frozenset({first, second}) in OVERLAPPING_SCOPES:
        with pytest.raises(RouteError) as caught:
            create(mode="reply", **scope[second])
        assert caught.value.field == "overlap"
        assert caught.value.details["route_id"] == existing.id
        assert route_count() == 1
    else:
        create(mode="reply", **scope[second])
        assert route_count() == 2


@pytest.mark.parametrize(
    "first, second, overlap",
    [
        ([], ["text"], True),
        (["text"], ["text", "image"], True),
        (["text"], ["image"], False),
        (["event"], ["event.subscribe"], True),
        (["event.subscribe"], ["event.click"], False),
        (["event.subscribe"], ["text", "event.subscribe"], True),
        (["event"], ["text"], False),
    ],
)
def test_reply_routes_with_overlapping_types_are_refused(app, first, second, overlap):
    create(mode="reply", msg_types=first)
    if overlap:
        with pytest.raises(RouteError):
            create(mode="reply", msg_types=second)
    else:
        create(mode="reply", msg_types=second)


def test_async_and_paused_routes_never_conflict_but_unpausing_and_editing_are_checked(app):
    create(mode="async")
    create(mode="async")  # any number of async routes
    first = create(mode="reply")
    routes.set_paused(first, True)
    second = create(mode="reply")  # the paused one does not count
    with pytest.raises(RouteError):
        routes.set_paused(first, False)
    assert db.session.get(RelayRoute, first.id).paused is True
    third = create(mode="async")
    with pytest.raises(RouteError):
        routes.update_route(third, mode="reply")
    routes.update_route(second, msg_types=["image"])
    routes.update_route(first, msg_types=["text"])  # a paused route may be edited freely
    routes.set_paused(first, False)  # no overlap left
    assert not db.session.get(RelayRoute, first.id).paused


# --- matching ---------------------------------------------------------------------------------


def test_routes_for_respects_scope_type_and_pause(app):
    merchant_a, merchant_b = factories.make_merchant(), factories.make_merchant()
    account = make_account(merchant_a)
    unassigned = make_account(None)
    everyone = create(name="everyone")
    mine = create(name="mine", merchant_id=merchant_a.id, msg_types=["text", "event.click"])
    theirs = create(name="theirs", merchant_id=merchant_b.id)
    just_it = create(name="just it", authorizer_appid=account.appid, msg_types=["event"])
    paused = create(name="paused")
    routes.set_paused(paused, True)

    def names(authorizer, msg_type):
        return [r.name for r in routes.routes_for(authorizer, msg_type)]

    assert names(account, "text") == ["everyone", "mine"]
    assert names(account, "image") == ["everyone"]
    assert names(account, routes.type_key("event", "CLICK")) == ["everyone", "mine", "just it"]
    assert names(account, routes.type_key("event", "subscribe")) == ["everyone", "just it"]
    assert names(unassigned, "text") == ["everyone"]  # never a merchant's route
    assert theirs.name not in names(account, "text")
    assert {everyone.id, mine.id, just_it.id} >= {r.id for r in routes.routes_for(account, "text")}


def test_type_keys_lower_case_events():
    assert routes.type_key("event", "SCAN") == "event.scan"
    assert routes.type_key("text") == "text"
    assert routes.types_match(["event"], "event.location")
    assert not routes.types_match(["event.click"], "event.view")
    assert routes.types_match([], "miniprogrampage")


def test_the_most_specific_reply_route_answers_when_several_match(app):
    merchant = factories.make_merchant()
    account = make_account(merchant)
    # Overlaps the rule refuses can still arise (an account assigned later): build them raw.
    now = clock.now()
    rows = [
        RelayRoute(name=name, url=URL, format="json", mode="reply", secret="s" * 20,
                   msg_types=types, created_at=now, updated_at=now, **scope)
        for name, scope, types in [
            ("all", {}, []), ("merchant", {"merchant_id": merchant.id}, []),
            ("account", {"authorizer_appid": account.appid}, []),
            ("account typed", {"authorizer_appid": account.appid}, ["text"]),
        ]
    ]  # fmt: skip
    db.session.add_all(rows)
    db.session.commit()
    matching = routes.routes_for(account, "text")
    assert routes.pick_reply_route(matching).name == "account typed"
    assert routes.pick_reply_route(routes.routes_for(account, "image")).name == "account"
    assert routes.pick_reply_route([]) is None


def test_deleting_a_route_deletes_its_deliveries(app):
    account = make_account(factories.make_merchant())
    route = create()
    message = RelayMessage(authorizer_id=account.id, dedupe_key="k" * 64, msg_type="text",
                           create_time=1, payload="<xml/>")  # fmt: skip
    db.session.add(message)
    db.session.flush()
    db.session.add(RelayDelivery(message_id=message.id, route_id=route.id,
                                 authorizer_id=account.id, mode="async", create_time=1,
                                 status="pending"))  # fmt: skip
    db.session.commit()
    routes.delete_route(route)
    assert db.session.scalar(select(func.count()).select_from(RelayDelivery)) == 0
    assert db.session.scalar(select(func.count()).select_from(RelayMessage)) == 1


# --- test send --------------------------------------------------------------------------------


def test_test_send_reaches_the_service_in_its_format_and_stores_nothing(app, services):
    from tests.relay.conftest import json_signature_ok, wechatpy_text_handler

    behave, replies = wechatpy_text_handler("sendtoken1")
    xml_service = services(behave)
    reply = create(mode="reply", url=xml_service.url, token="sendtoken1")
    result = routes.test_send(reply)
    assert (result.status_code, result.error) == (200, None)
    assert result.reply_xml == next(iter(replies.values())) and result.duration_ms >= 0

    json_service = services(lambda seen: (200, "success"))
    async_route = create(format="json", url=json_service.url, secret="s" * 20)
    result = routes.test_send(async_route)
    assert (result.status_code, result.reply_xml, result.error) == (200, None, None)
    assert json_signature_ok("s" * 20, json_service.seen[0])

    failing = services(lambda seen: (200, "<xml>not a reply</xml>"))
    routes.update_route(reply, url=failing.url)
    assert routes.test_send(reply).error.startswith("invalid reply:")
    routes.update_route(reply, url="http://127.0.0.1:9/")
    assert routes.test_send(reply).error == "connection error"
    assert db.session.scalar(select(func.count()).select_from(RelayMessage)) == 0
