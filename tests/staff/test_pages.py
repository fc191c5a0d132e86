"""Overview, account detail, health, audit log, merchants: content and fragments."""

from datetime import timedelta

from app.extensions import db
from app.models import HealthAlert, JobRun
from app.services import audit, clock
from app.services.platform.platforms import default_appid
from tests import factories
from tests.staff.conftest import make_account, make_attention, make_event

EN = {"Accept-Language": "en"}


def htmx(target):
    return {"HX-Request": "true", "HX-Target": target, "HX-Current-URL": "http://localhost/", **EN}


def test_overview_counts_attention_and_charts(staff_client, seeded):
    html = staff_client.get("/staff/", headers=EN).get_data(as_text=True)
    assert "Active grants" in html and "Pending sessions" in html
    assert html.count("<svg") == 3 and "<script" not in html.split("</head>")[1]
    assert "Needs attention" in html and "Failing token refreshes" in html
    assert "Events per day by type" in html and "component_verify_ticket" not in html


def test_overview_attention_fragment(staff_client, app):
    make_attention(make_account())
    fragment = staff_client.get("/staff/", headers=htmx("attention")).get_data(as_text=True)
    assert fragment.lstrip().startswith('<section class="card attention" id="attention"')
    assert "Authorization mismatch" in fragment and "<svg" not in fragment


def test_alerts_show_on_overview_and_health(staff_client, app):
    now = clock.now()
    db.session.add(
        HealthAlert(
            kind="foreign_refresh",
            component_appid=default_appid(),
            first_seen=now,
            last_seen=now,
            count=3,
        )
    )
    db.session.add(JobRun(name="ticket_watchdog", started_at=now, outcome="ok", runs=5,
                          failures=0, detail="ok"))  # fmt: skip
    db.session.commit()
    assert "Component token refreshed elsewhere" in staff_client.get("/staff/", headers=EN).text
    html = staff_client.get("/staff/health", headers=EN).get_data(as_text=True)
    assert "Component token refreshed elsewhere" in html and "ticket_watchdog" in html
    assert "Sandbox release check" not in html  # only with SANDBOX_CONTROL_URL
    fragment = staff_client.get("/staff/health", headers=htmx("health_status")).text
    assert fragment.lstrip().startswith('<div id="health_status"')


def test_health_shows_the_sandbox_release_check_only_when_configured(staff_client, app,
                                                                      monkeypatch):  # fmt: skip
    from app.services.console import stats

    monkeypatch.setitem(app.config, "SANDBOX_CONTROL_URL", "http://127.0.0.1:9")
    monkeypatch.setattr(stats.requests, "get", lambda *a, **k: _Answer())
    html = staff_client.get("/staff/health", headers=EN).get_data(as_text=True)
    assert "Sandbox release check" in html and "Passed" in html


class _Answer:
    def raise_for_status(self):
        pass

    def json(self):
        return {"release_check": {"passed": True, "group": 1, "checks": [
            {"appid": "wx570bc396a51b8ff8", "check": "text", "passed": True}]}}  # fmt: skip


def test_account_detail(staff_client, app):
    merchant = factories.make_merchant(name="云栖茶业")
    account = make_account(merchant, set_ids=[1, 2, 3])
    make_event(account.appid, fields={"InfoType": "authorized", "AuthorizationCode": "secret-code",
                                      "AuthorizerAppid": account.appid})  # fmt: skip
    make_event(account.appid, outcome="failed")
    audit.record("grant.authorized", target_type="authorizer", target_id=account.id)
    db.session.commit()
    html = staff_client.get(f"/staff/accounts/{account.id}", headers=EN).get_data(as_text=True)
    assert account.appid in html and "云栖茶业" in html
    assert "secret-code" not in html and "***" in html
    assert "Replay" in html and "grant.authorized" in html and "Token health" in html
    assert "Grant history" in html and "requested versus granted" in html


def test_account_events_fragment_pages_back(staff_client, app):
    account = make_account()
    events = [make_event(account.appid) for _ in range(30)]
    url = f"/staff/accounts/{account.id}?before={events[-1].id}"
    fragment = staff_client.get(url, headers=htmx("events")).get_data(as_text=True)
    assert fragment.lstrip().startswith('<section class="card" id="events"')
    assert fragment.count("<li class=") == 25
    full = staff_client.get(url).get_data(as_text=True)
    assert "<html" in full and 'id="events"' in full


def test_unknown_account_is_404(staff_client):
    assert staff_client.get("/staff/accounts/424242").status_code == 404


def test_audit_log_filters(staff_client, app):
    merchant = factories.make_merchant()
    audit.record("api_key.created", actor="alice@example.com", merchant_id=merchant.id)
    audit.record("grant.updated", actor="system", merchant_id=merchant.id)
    old = audit.record("grant.authorized", actor="system")
    old.at = clock.now() - timedelta(days=40)
    db.session.commit()

    def results(url):
        return staff_client.get(url).get_data(as_text=True).split('id="audit_results"')[1]

    text = results("/staff/audit?actor=alice")
    assert "api_key.created" in text and "grant.updated" not in text
    text = results(f"/staff/audit?merchant={merchant.id}&action=grant.*")
    assert "grant.updated" in text and "api_key.created" not in text
    since = (clock.now() - timedelta(days=2)).date().isoformat()
    text = results(f"/staff/audit?date_from={since}&action=grant.authorized")
    assert "No audit entries match" in text or "没有" in text
    fragment = staff_client.get("/staff/audit?actor=alice", headers=htmx("audit_results")).text
    assert fragment.lstrip().startswith('<section class="card" id="audit_results"')


def test_audit_log_pages_by_id(staff_client, app):
    for n in range(60):
        audit.record("test.entry", actor=f"bot{n}")
    db.session.commit()
    first = staff_client.get("/staff/audit?action=test.entry").get_data(as_text=True)
    assert "bot59" in first and "bot5<" not in first and "before=" in first


def test_merchants_search_page_and_accounts(staff_client, app):
    merchant = factories.make_merchant(name="外滩烘焙 Bund Bakery")
    factories.make_merchant(name="Other")
    make_account(merchant, nick_name="外滩烘焙服务号")
    text = staff_client.get("/staff/merchants?q=Bund").get_data(as_text=True)
    assert "外滩烘焙 Bund Bakery" in text and ">Other<" not in text
    fragment = staff_client.get("/staff/merchants?q=Bund", headers=htmx("merchant_list")).text
    assert fragment.lstrip().startswith('<section class="card" id="merchant_list"')
    detail = staff_client.get(f"/staff/merchants/{merchant.id}").get_data(as_text=True)
    assert "外滩烘焙服务号" in detail


def test_both_languages(staff_client, seeded):
    zh = staff_client.get("/staff/accounts/", headers={"Accept-Language": "zh-CN"}).text
    en = staff_client.get("/staff/accounts/", headers=EN).text
    assert "Authorizations" in en and 'lang="zh-CN"' in zh


def test_coverage_lists_the_sets_the_platform_offers(app, staff_client):
    app.config["PLATFORM_PERMISSION_SETS"] = ["1", "2", "17"]
    make_account(set_ids=[1, 88])  # 88: granted by WeChat although the platform no longer offers it
    html = staff_client.get("/staff/", headers=EN).get_data(as_text=True)
    chart = html.split("Permission-set coverage", 1)[1]
    for name in ("Message management", "User management", "Mini Program codes"):
        assert name in chart
    assert "Mini Program links" in chart  # set 88, still shown because it is granted
    assert "Media assets" not in chart  # set 11: neither offered nor granted
