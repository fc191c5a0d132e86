"""Two third-party platforms in one deployment, over real HTTP against the sandbox: both
platforms' tickets through the one event URL, a push for an unknown AppId refused, custody
per platform (one platform failing never disturbs the other), and the token API per platform."""

import time

import requests
from sqlalchemy import func, select, text

from app.extensions import db
from app.models import ComponentCredential, HealthAlert, InboxEvent, VerifyTicket
from app.services.custody import apikeys
from app.services.platform import credentials, health, platforms
from app.wechat.crypto import MessageCrypto
from app.wechat.events import build_event_xml
from tests.grants.test_api import conforms
from tests.platforms.conftest import B_APPID, B_KEY


def _tickets(portal) -> dict[str, str]:
    def read():
        rows = db.session.scalars(select(VerifyTicket)).all()
        return {row.component_appid: row.value for row in rows}

    return portal.call(read)


def _as(portal, appid, fn, *args):
    def run():
        with platforms.using(appid):
            return fn(*args)

    return portal.call(run)


def _active_alerts(portal) -> set[tuple[str, str]]:
    def read():
        return {(a.kind, a.component_appid) for a in health.active_alerts()}

    return portal.call(read)


def test_both_platforms_tickets_through_the_one_event_url_are_both_kept(sandbox, live_portal, two):
    # Interleaved, as two platforms' 10-minute schedules are: neither overwrites the other.
    pushed = []
    for _ in range(3):
        pushed.append((two["a"], sandbox.push_ticket()))
        pushed.append((two["b"], sandbox.push_ticket(two["b"])))
    sandbox.flush()
    newest = {appid: ticket for appid, ticket in pushed}
    assert _tickets(live_portal) == newest
    for appid in (two["a"], two["b"]):
        assert _as(live_portal, appid, credentials.current_ticket) == newest[appid]


def test_each_platforms_component_token_comes_from_its_own_ticket(sandbox, live_portal, two):
    sandbox.push_ticket()
    sandbox.push_ticket(two["b"])
    sandbox.flush()
    token_a = _as(live_portal, two["a"], credentials.component_access_token)
    token_b = _as(live_portal, two["b"], credentials.component_access_token)
    assert token_a != token_b
    # WeChat (the sandbox) accepts each token as its own platform's only.
    for appid, token in ((two["a"], token_a), (two["b"], token_b)):
        answer = sandbox.wechat(
            "component/api_create_preauthcode", {"component_appid": appid}, token=token
        )
        assert answer.get("pre_auth_code"), answer
    wrong = sandbox.wechat(
        "component/api_create_preauthcode", {"component_appid": two["a"]}, token=token_b
    )
    assert wrong.get("errcode") not in (None, 0)


def test_one_platform_failing_leaves_the_other_working(sandbox, live_portal, two):
    sandbox.push_ticket()
    sandbox.push_ticket(two["b"])
    sandbox.flush()
    sandbox.control(
        "faults",
        {
            "component_appid": two["b"],
            "endpoints": {"api_component_token": {"errcode": 61004, "times": 100}},
        },
    )
    summary = live_portal.call(credentials.refresh_component_token_job)
    assert summary.startswith(f"{two['a']}: ok; {two['b']}: unavailable")
    assert _active_alerts(live_portal) == {(health.IP_NOT_WHITELISTED, two["b"])}
    token_a = _as(live_portal, two["a"], credentials.component_access_token)
    assert sandbox.wechat(
        "component/api_create_preauthcode", {"component_appid": two["a"]}, token=token_a
    ).get("pre_auth_code")
    # B recovers: its alert resolves; A never had one.
    sandbox.set_faults(component_appid=two["b"], clear=True)
    assert live_portal.call(credentials.refresh_component_token_job) == (
        f"{two['a']}: ok; {two['b']}: ok"
    )
    assert _active_alerts(live_portal) == set()


def test_a_push_for_an_unknown_appid_is_refused_and_counted(sandbox, live_portal, two):
    stranger = MessageCrypto("strangertoken", B_KEY, "wx0000000000c0ffee")
    xml = build_event_xml(
        "component_verify_ticket",
        {"AppId": "wx0000000000c0ffee", "CreateTime": int(time.time()),
         "ComponentVerifyTicket": "ticket@@@stranger"},
    )  # fmt: skip
    body, signature = stranger.encrypt_message(xml, "1700000000", "n1")
    query = {"timestamp": "1700000000", "nonce": "n1", "msg_signature": signature}
    answer = requests.post(f"{live_portal.url}/wechat/events", params=query, data=body, timeout=10)
    assert (answer.status_code, answer.text) == (403, "unknown_appid")
    counted = live_portal.call(health.counters, None, "rejected:events:")
    assert counted == {"rejected:events:unknown_appid": 1}
    assert live_portal.call(lambda: db.session.scalar(select(func.count(InboxEvent.id)))) == 0
    assert _tickets(live_portal) == {}


def test_a_retired_platforms_pushes_are_refused(sandbox, live_portal, two):
    def retire():
        platforms.set_status(platforms.get(two["b"]), "retired")
        db.session.commit()

    live_portal.call(retire)
    sandbox.push_ticket(two["b"])
    sandbox.flush()
    assert _tickets(live_portal) == {}
    # Refused each of the three times WeChat tries.
    assert live_portal.call(health.counters, None, "rejected:events:") == {
        "rejected:events:unknown_appid": 3
    }


def test_the_per_platform_event_url_and_an_sdk_envelope_are_routed(sandbox, live_portal, two):
    box = MessageCrypto("platformbtoken", B_KEY, two["b"])
    xml = build_event_xml(
        "component_verify_ticket",
        {"AppId": two["b"], "CreateTime": int(time.time()), "ComponentVerifyTicket": "t@@@1"},
    )
    body, signature = box.encrypt_message(xml, "1700000000", "n1")
    query = {"timestamp": "1700000000", "nonce": "n1", "msg_signature": signature}
    url = f"{live_portal.url}/wechat/{two['b']}/events"
    assert requests.post(url, params=query, data=body, timeout=10).text == "success"
    # The same push at the other platform's URL names the wrong platform.
    wrong = requests.post(
        f"{live_portal.url}/wechat/{two['a']}/events", params=query, data=body, timeout=10
    )
    assert (wrong.status_code, wrong.text) == (403, "wrong_appid")
    # A WeChat SDK's envelope has no <AppId>: the platform whose token signed it is the one.
    encrypt = box.encrypt(xml.replace("t@@@1", "t@@@2").replace("<CreateTime>", "<CreateTime>1"))
    sdk_body = (
        f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt><MsgSignature>x</MsgSignature>"
        "<TimeStamp>1700000001</TimeStamp><Nonce>n2</Nonce></xml>"
    )
    signed = {"timestamp": "1700000001", "nonce": "n2",
              "msg_signature": box.signature("1700000001", "n2", encrypt)}  # fmt: skip
    answer = requests.post(f"{live_portal.url}/wechat/events", params=signed, data=sdk_body)
    assert answer.text == "success"
    assert _tickets(live_portal) == {two["b"]: "t@@@2"}


def test_the_token_api_per_platform(sandbox, live_portal, two, client):
    sandbox.push_ticket()
    sandbox.push_ticket(two["b"])
    sandbox.flush()
    key = live_portal.call(
        lambda: apikeys.create_api_key("ops", ["component_token:read", "authorizers:read"])[1]
    )
    headers = {"Authorization": f"Bearer {key}"}
    listed = conforms(client.get("/api/v1/platforms", headers=headers), "/platforms")
    assert [(p["component_appid"], p["is_default"]) for p in listed["items"]] == [
        (two["a"], True),
        (two["b"], False),
    ]
    template = "/platforms/{component_appid}/component/access-token"
    tokens = {}
    for appid in (two["a"], two["b"]):
        answer = client.get(f"/api/v1/platforms/{appid}/component/access-token", headers=headers)
        body = conforms(answer, template)
        assert body["component_appid"] == appid
        tokens[appid] = body["component_access_token"]
    stored = live_portal.call(
        lambda: dict(
            db.session.execute(
                select(ComponentCredential.component_appid, ComponentCredential.token_hash)
            ).all()
        )
    )
    assert stored == {a: credentials.token_hash(t) for a, t in tokens.items()}
    default = client.get("/api/v1/component/access-token", headers=headers).get_json()
    assert default["component_access_token"] == tokens[two["a"]]
    unknown = client.get("/api/v1/platforms/wx00000000/component/access-token", headers=headers)
    assert conforms(unknown, template)["error"]["code"] == "platform_not_found"
    # A platform's authorizers: none held on B yet; an unknown platform is a 404.
    on_b = client.get(f"/api/v1/authorizers?component_appid={two['b']}", headers=headers)
    assert conforms(on_b, "/authorizers")["total"] == 0
    nowhere = client.get("/api/v1/authorizers?component_appid=wx00000000", headers=headers)
    assert conforms(nowhere, "/authorizers")["error"]["code"] == "platform_not_found"


def test_platform_cli_adds_lists_and_refuses_bad_input(app):
    runner = app.test_cli_runner()
    added = runner.invoke(
        args=["platform", "add", "--appid", B_APPID, "--secret", "s3cret", "--token", "tok123",
              "--aes-key", B_KEY, "--name", "Studio"]
    )  # fmt: skip
    assert (added.exit_code, added.output.strip()) == (0, B_APPID)
    again = runner.invoke(
        args=["platform", "add", "--appid", B_APPID, "--secret", "s", "--token", "tok123",
              "--aes-key", B_KEY, "--name", "Again"]
    )  # fmt: skip
    assert again.exit_code != 0 and "exists already" in again.output
    bad = runner.invoke(
        args=["platform", "add", "--appid", "wxbadkey01", "--secret", "s", "--token", "tok123",
              "--aes-key", "short", "--name", "Bad"]
    )  # fmt: skip
    assert bad.exit_code != 0 and "EncodingAESKey" in bad.output
    listed = runner.invoke(args=["platform", "list"]).output.splitlines()
    assert listed[0].split() == ["component_appid", "name", "status", "release", "default"]
    assert listed[1].split()[0] == app.config["WECHAT_COMPONENT_APPID"]
    assert listed[1].split()[-1] == "yes"
    assert listed[2].split() == [B_APPID, "Studio", "active", "testing", "no"]
    assert len(listed) == 3
    with app.app_context():
        row = platforms.get(B_APPID)
        assert (row.appsecret, row.token, row.encoding_aes_key) == ("s3cret", "tok123", B_KEY)
        raw = db.session.execute(
            text("SELECT appsecret, token FROM platforms WHERE component_appid = :appid"),
            {"appid": B_APPID},
        ).one()
        assert "s3cret" not in raw[0] and "tok123" not in raw[1]  # encrypted at rest
        assert db.session.scalar(select(func.count(HealthAlert.id))) == 0


def test_metrics_carry_each_platform(sandbox, live_portal, two, client, app, monkeypatch):
    from app import metrics
    from tests.operations.test_metrics import TOKEN, scrape, value

    app.config["GRANTDESK_METRICS_TOKEN"] = TOKEN
    monkeypatch.setattr(metrics, "DB_CACHE_SECONDS", 0)
    sandbox.push_ticket(two["b"])
    sandbox.flush()
    live_portal.call(credentials.refresh_component_token_job)  # A has no ticket; B refreshes
    scraped = scrape(client)
    assert 0 <= value(scraped, "grantdesk_ticket_age_seconds", component_appid=two["b"]) < 60
    ages = scraped["grantdesk_ticket_age_seconds"].samples
    assert [sample.labels["component_appid"] for sample in ages] == [two["b"]]
    ttl_b = value(scraped, "grantdesk_component_token_ttl_seconds", component_appid=two["b"])
    assert 7000 < ttl_b <= 7200
    no_ticket = {"kind": "no_valid_ticket", "severity": "critical"}
    assert value(scraped, "grantdesk_alerts_active", component_appid=two["a"], **no_ticket) == 1
    assert value(scraped, "grantdesk_alerts_active", component_appid=two["b"], **no_ticket) == 0


def test_the_start_writes_the_default_platform_and_reads_never_write(app):
    appid = app.config["WECHAT_COMPONENT_APPID"]
    # Before the first start: an unsaved row stands for the default platform, nothing written.
    listed = platforms.all_platforms()
    assert [(row.component_appid, row.is_default) for row in listed] == [(appid, True)]
    assert not db.session.new and not db.session.dirty
    assert db.session.scalar(select(func.count()).select_from(text("platforms"))) == 0
    # A read that left a write in the request's transaction would hold up the registry's own
    # session (PostgreSQL waited forever): the registry reads, and its reload writes nothing.
    platforms.forget_cache()
    assert platforms.keys("wx0000000000000000") is None
    platforms.sync_default_on_start(app)
    raw = db.session.execute(
        text("SELECT token, is_default FROM platforms WHERE component_appid = :a"), {"a": appid}
    ).one()
    assert raw[1] and app.config["WECHAT_TOKEN"] not in raw[0]  # encrypted at rest
    # A changed WECHAT_* variable updates the row on the next start.
    app.config["WECHAT_TOKEN"] = "rotatedtoken"
    platforms.sync_default_on_start(app)
    assert platforms.get(appid).token == "rotatedtoken"
