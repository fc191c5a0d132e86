"""The relay with several third-party platforms (#16), over real HTTP: one account authorized to
platforms A (the default) and B is two accounts, each message is stored once for the platform it
came for, reaches only the routes whose scope includes that platform's account, names its
platform in json, and a reply is sealed with the keys of the platform the message came for, even
when another platform's request wrote it in a shared group commit."""

import hashlib
import json
import random
import threading
from collections import Counter

import pytest
import xmltodict
from sqlalchemy import func, select

from app.extensions import db
from app.models import Authorizer, RelayDelivery, RelayMessage, RelayRoute
from app.services import clock
from app.services.platform import platforms
from app.services.relay import inbound, outbox, routes
from app.wechat.crypto import MessageCrypto
from app.wechat.errors import SignatureError
from app.wechat.events import parse_message
from tests import factories
from tests.relay.conftest import (
    WeChat,
    counts,
    deliveries,
    json_body,
    json_signature_ok,
    make_account,
    settled,
    text_xml,
    wechatpy_text_handler,
)

B = "wx5b7c9d1e3f5a7b9c"
B_TOKEN = "platformbtoken"
B_KEY = "bcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH"
SECRET = "relay-platform-secret-0123456789"
TOKEN = "platformsrelay2024"
THREADS = 12


@pytest.fixture
def platform_b(app):
    """Platform B beside the default one, as `flask platform add` adds it."""
    platforms.add(
        component_appid=B, appsecret="platformbsecret0123456789", token=B_TOKEN,
        encoding_aes_key=B_KEY, name="Mini Program studio",
    )  # fmt: skip
    db.session.commit()
    return B


@pytest.fixture
def wechat_b(live_portal, platform_b):
    """WeChat as platform B: sealed with B's keys, posted to /wechat/<B>/messages/<appid>."""
    return WeChat(live_portal.url, live_portal.app.config, component_appid=B, token=B_TOKEN,
                  aes_key=B_KEY)  # fmt: skip


@pytest.fixture
def a(app):
    return app.config["WECHAT_COMPONENT_APPID"]


def held_on_both(merchant):
    """One account authorized to A (the default platform) and to B: two Authorizer rows."""
    on_a = make_account(merchant)
    on_b = make_account(merchant, component_appid=B, appid=on_a.appid, user_name=on_a.user_name)
    return on_a, on_b


def json_route(service, name, **scope):
    return routes.create_route(name=name, url=service.url, format="json", mode="async",
                               secret=SECRET, **scope)  # fmt: skip


def accept(seen):
    assert json_signature_ok(SECRET, seen)
    return 200, "ok"


def stored() -> set[tuple[str, str, str]]:
    """(platform, appid, MsgId) of every stored message."""
    settled()
    db.session.rollback()
    rows = db.session.execute(
        select(Authorizer.component_appid, Authorizer.appid, RelayMessage.payload).join(
            Authorizer, Authorizer.id == RelayMessage.authorizer_id
        )
    ).all()
    return {(c, appid, parse_message(payload).fields["MsgId"]) for c, appid, payload in rows}


# --- (a) one account on two platforms ------------------------------------------------------------


def test_one_account_on_two_platforms_each_message_stays_on_its_platform(
    live_portal, wechat, wechat_b, services, merchant, a
):
    on_a, on_b = held_on_both(merchant)
    only_a, only_b, everyone = services(accept), services(accept), services(accept)
    json_route(only_a, "A only", component_appid=a)
    json_route(only_b, "B only", component_appid=B)
    json_route(everyone, "every platform")
    # An appid route on B takes B's account only, never A's account of the same appid.
    b_account = services(accept)
    json_route(b_account, "B's account", component_appid=B, authorizer_appid=on_b.appid)

    # WeChat pushes one user message to each platform the account authorized (same MsgId).
    inner = text_xml(on_a, "两个平台 both", msg_id="880001")
    assert wechat.send(on_a.appid, inner).text == "success"
    assert wechat_b.send(on_b.appid, inner).text == "success"
    # WeChat's retries of each collide with their own platform's copy only.
    assert wechat.send(on_a.appid, inner).text == "success"
    assert wechat_b.send(on_b.appid, inner).text == "success"

    assert stored() == {(a, on_a.appid, "880001"), (B, on_b.appid, "880001")}
    assert counts() == (2, 5)
    # The default platform's dedupe key is the pre-#16 one: its stored rows and retries match.
    message = parse_message(inner)
    legacy = hashlib.sha256(f"{on_a.appid}\x1f{message.dedupe_key}".encode()).hexdigest()
    keys = dict(
        db.session.execute(select(RelayMessage.authorizer_id, RelayMessage.dedupe_key)).all()
    )
    assert keys[on_a.id] == legacy == inbound.dedupe_key(on_a.appid, message, a)
    assert keys[on_b.id] == inbound.dedupe_key(on_b.appid, message, B) != legacy

    assert outbox.deliver_due() == 5
    seen = {
        name: [(json_body(s)["component_appid"], json_body(s)["authorizer_appid"])
               for s in service.seen]
        for name, service in (("a", only_a), ("b", only_b), ("all", everyone),
                              ("b_account", b_account))
    }  # fmt: skip
    assert seen["a"] == [(a, on_a.appid)]
    assert seen["b"] == [(B, on_b.appid)]
    assert seen["b_account"] == [(B, on_b.appid)]
    assert sorted(seen["all"]) == sorted([(a, on_a.appid), (B, on_b.appid)])
    for service in (only_a, only_b, everyone, b_account):
        assert {json_body(s)["message"]["MsgId"] for s in service.seen} == {"880001"}
    # Each delivery is its own platform's account's.
    by_route = Counter(
        (route, authorizer) for route, authorizer in db.session.execute(
            select(RelayRoute.name, RelayDelivery.authorizer_id).join(RelayRoute)
        )
    )  # fmt: skip
    assert by_route == Counter({("A only", on_a.id): 1, ("B only", on_b.id): 1,
                                ("every platform", on_a.id): 1, ("every platform", on_b.id): 1,
                                ("B's account", on_b.id): 1})  # fmt: skip


def test_a_message_for_an_account_held_on_another_platform_only_is_not_stored(
    live_portal, wechat, wechat_b, services, merchant
):
    on_a = make_account(merchant)
    on_b = make_account(merchant, component_appid=B)
    everyone = services(accept)
    json_route(everyone, "every platform")

    # B pushes for the account held on A only, A for the one held on B only: not ours to read.
    assert wechat_b.send(on_a.appid, text_xml(on_a, msg_id="1")).text == "success"
    assert wechat.send(on_b.appid, text_xml(on_b, msg_id="2")).text == "success"

    assert counts() == (0, 0)
    assert outbox.deliver_due() == 0 and everyone.seen == []


def test_the_outbox_names_each_accounts_platform_in_json(live_portal, wechat_b, services, merchant):
    on_b = make_account(merchant, component_appid=B)
    service = services(accept)
    json_route(service, "every platform", merchant_id=merchant.id)

    wechat_b.send(on_b.appid, text_xml(on_b, "hi", msg_id="77"))
    assert outbox.deliver_due() == 1

    (seen,) = service.seen
    document = json_body(seen)
    assert (document["component_appid"], document["authorizer_appid"]) == (B, on_b.appid)
    assert document["merchant_id"] == merchant.id
    # wechat-xml stays WeChat's plaintext protocol: nothing about the platform is added.


# --- (b) replies with the platform's keys ---------------------------------------------------------


def test_a_reply_route_on_platform_b_answers_sealed_with_bs_keys(
    live_portal, wechat, wechat_b, services, merchant, a
):
    on_a, on_b = held_on_both(merchant)
    behave_b, replies_b = wechatpy_text_handler(TOKEN)
    behave_a, replies_a = wechatpy_text_handler(TOKEN)
    service_b, service_a = services(behave_b), services(behave_a)
    # Two reply routes for the same account, one per platform: they never overlap.
    routes.create_route(name="B replies", url=service_b.url, format="wechat-xml", mode="reply",
                        token=TOKEN, component_appid=B)  # fmt: skip
    routes.create_route(name="A replies", url=service_a.url, format="wechat-xml", mode="reply",
                        token=TOKEN, component_appid=a, authorizer_appid=on_a.appid)  # fmt: skip

    inner = text_xml(on_b, "B 的问题", msg_id="990001")
    response = wechat_b.send(on_b.appid, inner)

    assert response.status_code == 200
    plaintext = wechat_b.open_reply(response.text)
    assert plaintext == replies_b["990001"]
    assert xmltodict.parse(plaintext)["xml"]["Content"] == "收到 got: B 的问题"
    # Sealed for B: B's MessageCrypto opens it, A's does not.
    assert MessageCrypto(B_TOKEN, B_KEY, B).open_reply(response.text) == plaintext
    config = live_portal.app.config
    a_crypto = MessageCrypto(config["WECHAT_TOKEN"], config["WECHAT_ENCODING_AES_KEY"], a)
    with pytest.raises(SignatureError):
        a_crypto.open_reply(response.text)
    assert service_a.seen == [] and len(service_b.seen) == 1

    # WeChat's retry gets the stored reply, sealed anew with B's keys.
    retry = wechat_b.send(on_b.appid, inner)
    assert wechat_b.open_reply(retry.text) == plaintext
    assert len(service_b.seen) == 1

    # The same message pushed to A goes to A's reply route, sealed with A's keys.
    answer_a = wechat.send(on_a.appid, inner)
    assert wechat.open_reply(answer_a.text) == replies_a["990001"]
    assert [d.status for d in deliveries()] == ["delivered", "delivered"]


def test_a_json_reply_route_on_b_gets_bs_component_appid(live_portal, wechat_b, services, merchant):
    def behave(seen):
        document = json_body(seen)
        answer = f"{document['component_appid']}:{document['message']['Content']}"
        return 200, json.dumps({"reply": {"MsgType": "text", "Content": answer}})

    on_b = make_account(merchant, component_appid=B)
    service = services(behave)
    routes.create_route(name="json", url=service.url, format="json", mode="reply", secret=SECRET,
                        authorizer_appid=on_b.appid, component_appid=B)  # fmt: skip

    response = wechat_b.send(on_b.appid, text_xml(on_b, "hi", msg_id="5"))

    assert xmltodict.parse(wechat_b.open_reply(response.text))["xml"]["Content"] == f"{B}:hi"


# --- (c) group commit with mixed platforms --------------------------------------------------------


@pytest.fixture
def batch_platforms(monkeypatch):
    """The platforms of every batch written (the real writer, observed)."""
    seen: list[set[str]] = []
    write_once = inbound._write_once

    def observed(batch):
        seen.append({item.component_appid for item in batch})
        return write_once(batch)

    monkeypatch.setattr(inbound, "_write_once", observed)
    return seen


@pytest.mark.parametrize("seed", [16, 20261208])
def test_concurrent_messages_for_both_platforms_are_stored_and_answered_for_their_own(
    live_portal, wechat, wechat_b, services, merchant, batch_platforms, a, seed
):
    rng = random.Random(seed)
    behave, _ = wechatpy_text_handler(TOKEN)
    service = services(behave)
    routes.create_route(name="reply", url=service.url, format="wechat-xml", mode="reply",
                        token=TOKEN)  # fmt: skip
    b_only_route = services(accept)
    json_route(b_only_route, "B's async", component_appid=B)
    shared = [held_on_both(merchant) for _ in range(3)]
    on_a_only, on_b_only = make_account(merchant), make_account(merchant, component_appid=B)
    senders = {a: wechat, B: wechat_b}
    held = [pair[0] for pair in shared] + [on_a_only]  # A's accounts
    held_b = [pair[1] for pair in shared] + [on_b_only]
    expected: set[tuple[str, str, str]] = set()
    sends = []  # (platform, account, inner xml, content or None when not ours)
    for n in range(30):
        msg_id, content = str(60_000 + n), f"消息 {n}"
        account = rng.choice(held + held_b)
        platforms_of = (
            [a, B] if account.appid in {p[0].appid for p in shared} else [account.component_appid]
        )
        for platform in platforms_of:
            expected.add((platform, account.appid, msg_id))
            inner = text_xml(account, content, msg_id=msg_id)
            sends += [(platform, account, inner, content)] * rng.randint(1, 2)
    # Pushes for an account the platform does not hold: answered, never stored.
    sends += [(B, on_a_only, text_xml(on_a_only, msg_id=str(70_000 + n)), None) for n in range(3)]
    sends += [(a, on_b_only, text_xml(on_b_only, msg_id=str(71_000 + n)), None) for n in range(3)]
    rng.shuffle(sends)
    answers: list[tuple[str, str | None, int, str]] = []
    lock = threading.Lock()

    def worker(mine):
        for platform, account, inner, content in mine:
            response = senders[platform].send(account.appid, inner)
            with lock:
                answers.append((platform, content, response.status_code, response.text))

    threads = [threading.Thread(target=worker, args=(sends[i::THREADS],)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert len(answers) == len(sends), seed
    for platform, content, status, text in answers:
        assert status == 200, seed
        if content is None:
            assert text == "success", seed
            continue
        reply = xmltodict.parse(senders[platform].open_reply(text))["xml"]  # its keys only
        assert reply["Content"] == f"收到 got: {content}", seed
    assert stored() == expected, seed
    assert service.calls() == len(expected), seed  # each message forwarded once per platform
    # B's async route got B's accounts' messages only.
    b_ids = {account.id for account in held_b}
    async_to = db.session.scalars(
        select(RelayDelivery.authorizer_id).where(RelayDelivery.mode == "async")
    ).all()
    assert set(async_to) <= b_ids
    assert len(async_to) == sum(1 for platform, _, _ in expected if platform == B), seed
    assert any(len(batch) > 1 for batch in batch_platforms), f"no mixed batch: {batch_platforms}"


def test_a_batch_with_both_platforms_copies_of_a_message_stores_each_for_its_account(
    app, platform_b, merchant, a
):
    on_a, on_b = held_on_both(merchant)
    route = json_route_row(component_appid=B)
    batch = [_arrival(on_a, "4242"), _arrival(on_b, "4242"), _arrival(on_b, "4242")]

    inbound._write(batch)

    assert [item.outcome for item in batch] == ["no_route", "stored", "duplicate"]
    assert batch[1].account.id == on_b.id and batch[1].async_routes[0].id == route.id
    everyone = json_route_row()
    again = [_arrival(on_a, "4242"), _arrival(on_b, "4242")]
    inbound._write(again)
    assert [item.outcome for item in again] == ["stored", "duplicate"]
    assert again[0].account.id == on_a.id
    assert [r.id for r in again[0].async_routes] == [everyone.id]
    db.session.rollback()
    owners = db.session.scalars(select(RelayMessage.authorizer_id).order_by(RelayMessage.id))
    assert list(owners) == [on_b.id, on_a.id]


def json_route_row(**scope):
    return routes.create_route(name="hook", url="http://127.0.0.1:9/hook", format="json",
                               mode="async", secret=SECRET, **scope)  # fmt: skip


def _arrival(account, msg_id):
    xml = text_xml(account, "hi", msg_id=msg_id)
    message = parse_message(xml)
    digest = inbound.dedupe_key(account.appid, message, account.component_appid)
    return inbound._Arrival(
        account.appid, message, xml, "text", digest, clock.now(), account.component_appid
    )


# --- routes: scope, overlap, test-send ------------------------------------------------------------


def test_routes_validate_their_platform(app, platform_b, a):
    route = routes.create_route(name="b", url="https://b.example.com/in", format="json",
                                mode="async", component_appid=f" {B} ")  # fmt: skip
    assert route.component_appid == B
    assert routes.create_route(name="a", url="https://a.example.com/in", format="json",
                               mode="async", component_appid=a).component_appid == a  # fmt: skip
    with pytest.raises(routes.RouteError) as refused:
        routes.create_route(name="x", url="https://x.example.com/in", format="json",
                            mode="async", component_appid="wx0000000000c0ffee")  # fmt: skip
    assert refused.value.field == "component_appid"
    assert str(refused.value) == "No such platform."
    db.session.rollback()
    routes.update_route(route, component_appid="")
    assert route.component_appid is None


def test_reply_routes_of_two_platforms_never_overlap_but_an_every_platform_one_does(
    app, platform_b, merchant, a
):
    on_a, on_b = held_on_both(merchant)
    common = {"url": "https://r.example.com/in", "format": "json", "mode": "reply"}
    routes.create_route(name="a", component_appid=a, **common)
    routes.create_route(name="b", component_appid=B, authorizer_appid=on_b.appid, **common)
    with pytest.raises(routes.RouteError) as refused:
        routes.create_route(name="all", **common)
    assert refused.value.field == "overlap"
    db.session.rollback()
    # A merchant route on B against the appid route on B: B's account is the merchant's.
    with pytest.raises(routes.RouteError):
        routes.create_route(name="m-b", component_appid=B, merchant_id=merchant.id, **common)
    db.session.rollback()
    # An every-platform merchant route against A's route: overlaps too (A's account).
    with pytest.raises(routes.RouteError):
        routes.create_route(name="m-all", merchant_id=merchant.id, **common)
    db.session.rollback()
    # The account moves to another merchant on B only: a merchant route for the old merchant on
    # B no longer meets the appid route on B (B's account is not that merchant's).
    on_b.merchant_id = factories.make_merchant().id
    db.session.commit()
    routes.create_route(name="m-b", component_appid=B, merchant_id=merchant.id, **common)


def test_test_send_speaks_as_the_routes_platform(live_portal, services, platform_b, a):
    service = services(accept)
    on_b = routes.create_route(name="b", url=service.url, format="json", mode="async",
                               secret=SECRET, component_appid=B)  # fmt: skip
    everyone = routes.create_route(name="all", url=service.url, format="json", mode="async",
                                   secret=SECRET)  # fmt: skip

    assert routes.test_send(on_b).error is None
    assert routes.test_send(everyone).error is None

    assert [json_body(seen)["component_appid"] for seen in service.seen] == [B, a]


def test_routes_for_an_account_follow_its_platform(app, platform_b, merchant, a):
    on_a, on_b = held_on_both(merchant)
    json_route_row(component_appid=a)
    json_route_row(component_appid=B, authorizer_appid=on_b.appid)
    json_route_row()
    names = {
        account.id: sorted(r.component_appid or "*" for r in routes.routes_for(account, "text"))
        for account in (on_a, on_b)
    }
    assert names == {on_a.id: ["*", a], on_b.id: ["*", B]}
    assert [r.component_appid for r in routes.list_routes(B)] == [B, None]


# --- (d) the CLI ----------------------------------------------------------------------------------


def test_cli_adds_a_route_for_one_platform_and_lists_it(runner, platform_b):
    result = runner.invoke(args=[
        "relay", "add", "--url", "https://b.example.com/in", "--format", "json", "--mode",
        "async", "--platform", B, "--name", "B",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    route = db.session.get(RelayRoute, int(result.stdout))
    assert route.component_appid == B
    listing = runner.invoke(args=["relay", "list"]).stdout.splitlines()
    assert listing[0].split()[4] == "platform"
    assert listing[1].split()[4] == B


def test_cli_refuses_an_unknown_platform(runner, platform_b):
    result = runner.invoke(args=[
        "relay", "add", "--url", "https://b.example.com/in", "--format", "json", "--mode",
        "async", "--platform", "wx0000000000c0ffee",
    ])  # fmt: skip
    assert result.exit_code != 0
    assert "No such platform." in result.output
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(RelayRoute)) == 0


# --- the console ----------------------------------------------------------------------------------


def test_the_console_offers_a_platform_only_when_there_are_several(app, a):
    from app.models import StaffRole
    from tests.conftest import AuthActions
    from tests.staff.conftest import post

    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    AuthActions(client).login(factories.make_staff(staff_role=StaffRole.ADMIN).email)
    assert 'name="component_appid"' not in client.get("/staff/integrations/relay/new").text
    assert "All platforms" not in client.get("/staff/integrations").text

    platforms.add(component_appid=B, appsecret="platformbsecret0123456789", token=B_TOKEN,
                  encoding_aes_key=B_KEY, name="Mini Program studio")  # fmt: skip
    db.session.commit()
    form = client.get("/staff/integrations/relay/new").text
    assert 'name="component_appid"' in form and f"Mini Program studio ({B})" in form
    data = {"name": "B hook", "url": "https://b.example.com/in", "format": "json",
            "mode": "async", "scope": "all", "msg_types": "", "secret": SECRET}  # fmt: skip
    refused = post(client, "/staff/integrations/relay", {**data, "component_appid": "wx0c0ffee"})
    assert refused.status_code == 422 and "No such platform." in refused.text
    created = post(client, "/staff/integrations/relay", {**data, "component_appid": B})
    assert created.status_code == 303
    route = db.session.scalar(select(RelayRoute).where(RelayRoute.name == "B hook"))
    assert route.component_appid == B
    page = client.get(f"/staff/integrations/relay/{route.id}").text
    assert "<dt>Platform</dt><dd>Mini Program studio</dd>" in page
    edit = client.get(f"/staff/integrations/relay/{route.id}/edit").text
    assert f'<option selected value="{B}">' in edit
    routes.create_route(name="A hook", url="https://a.example.com/in", format="json",
                        mode="async", component_appid=a)  # fmt: skip
    routes.create_route(name="Everyone hook", url="https://e.example.com/in", format="json",
                        mode="async")  # fmt: skip

    listing = client.get(f"/staff/integrations?platform={B}").text
    assert "B hook" in listing and "Everyone hook" in listing and "A hook" not in listing
    assert "All platforms" in listing
    everything = client.get("/staff/integrations").text
    assert all(name in everything for name in ("B hook", "A hook", "Everyone hook"))
    # Zh: the platform's words.
    zh = client.get(
        f"/staff/integrations/relay/{route.id}/edit", headers={"Accept-Language": "zh-CN"}
    )
    assert "全部第三方平台" in zh.text
