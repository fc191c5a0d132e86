"""Staff pages say stored values in the page's language, show partial grants, and keep the
per-page select honest; the provider profile (name, logo) is set here and used everywhere."""

import io
import re

import pytest

from app.extensions import db
from app.models import AttentionItem, AuditEntry, GrantChange, ProviderProfile, SessionStatus
from app.models.grants import appid_ref
from app.services import clock
from app.services.authorization import purge
from app.services.platform import provider
from app.services.platform.platforms import default_appid
from tests.merchant.conftest import make_session
from tests.staff.conftest import factories, make_account, make_attention, make_event, post

RAW_VALUES = ["authorized", "push", "redirect", "completed", "expired", "processed", "failed",
              "seeded", "updateauthorized", "component_verify_ticket", "wrong_account"]  # fmt: skip


def visible_text(html: str) -> str:
    html = re.sub(r"<(script|style|title)\b.*?</\1>", " ", html, flags=re.S)
    html = re.sub(r"<details>.*?</details>", " ", html, flags=re.S)  # raw event fields, on purpose
    return re.sub(r"<[^>]+>", " ", html)


def test_account_page_in_chinese_shows_no_raw_values(staff_client, staff):
    merchant = factories.make_merchant()
    account = make_account(merchant)
    db.session.add(GrantChange(grant=account.grant, at=clock.now(), kind="updated", set_ids=[1],
                               added=[], removed=[2], source="push"))  # fmt: skip
    for status in (SessionStatus.COMPLETED, SessionStatus.EXPIRED, SessionStatus.MISMATCH):
        reason = "wrong_account" if status is SessionStatus.MISMATCH else None
        make_session(merchant, biz_appid=account.appid, status=status, failure_reason=reason)
    make_event(account.appid, outcome="processed", info_type="updateauthorized")
    make_event(account.appid, outcome="failed", info_type="authorized")
    db.session.add(AttentionItem(
        kind="needs_reauthorization", dedupe_key="x:seed", authorizer_appid=account.appid,
        appid_hash=appid_ref(account.appid), details={"reason": "seeded"}, created_at=clock.now(),
    ))  # fmt: skip
    db.session.commit()
    staff.locale = "zh_CN"
    db.session.commit()
    page = staff_client.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    text = visible_text(page)
    found = [word for word in RAW_VALUES if re.search(rf"(?<![\w/-]){word}(?![\w/-])", text)]
    assert found == []
    assert "微信推送" in text and "已完成" in text and "已处理" in text and "演示数据" in text


def test_partial_grant_is_amber_with_missing_sets_in_staff_lists(staff_client, app):
    app.config["REQUIRED_PERMISSION_SETS_OFFICIAL_ACCOUNT"] = [1, 2, 3]
    merchant = factories.make_merchant()
    partial = make_account(merchant, set_ids=[1, 2], nick_name="Partial Tea")
    full = make_account(merchant, set_ids=[1, 2, 3], nick_name="Full Tea")
    listing = staff_client.get("/staff/accounts/?q=Tea").get_data(as_text=True)
    rows = {name: listing[listing.index(name) :].split("</tr>")[0] for name in ("Partial", "Full")}
    assert "Partially authorized" in rows["Partial"] and "Account services" in rows["Partial"]
    assert "Partially authorized" not in rows["Full"] and "Active" in rows["Full"]
    detail = staff_client.get(f"/staff/accounts/{partial.id}").get_data(as_text=True)
    assert 'data-status="partial"' in detail
    detail = staff_client.get(f"/staff/accounts/{full.id}").get_data(as_text=True)
    assert 'data-status="partial"' not in detail
    merchant_page = staff_client.get(f"/staff/merchants/{merchant.id}").get_data(as_text=True)
    assert merchant_page.count('data-status="partial"') == 1


def test_per_page_select_shows_what_the_list_uses(staff_client):
    page = staff_client.get("/staff/accounts/").get_data(as_text=True)
    assert re.search(r'<option selected value="50">|<option value="50" selected>', page), page
    page = staff_client.get("/staff/accounts/?per_page=25").get_data(as_text=True)
    assert re.search(r'<option selected value="25">|<option value="25" selected>', page)


def test_staff_set_provider_name_and_logo(staff_client, client, staff):
    logo = provider.monogram_png()
    response = post(staff_client, "/staff/settings/provider", data={
        "display_name": "  云帆互动   Yunfan ", "logo": (io.BytesIO(logo), "logo.png"),
    }, content_type="multipart/form-data")  # fmt: skip
    assert response.status_code == 303
    row = db.session.query(ProviderProfile).one()
    assert row.display_name == "云帆互动 Yunfan" and row.logo == logo
    assert row.logo_content_type == "image/png" and row.updated_by_id == staff.id
    served = staff_client.get("/provider/logo")
    assert served.data == logo and served.headers["Content-Type"] == "image/png"
    assert db.session.query(AuditEntry).filter_by(action="provider.updated").count() == 1


def test_bad_logo_is_refused_and_changes_nothing(staff_client):
    provider.update_provider("Before")
    response = post(staff_client, "/staff/settings/provider", data={
        "display_name": "After", "logo": (io.BytesIO(b"<svg onload=alert(1)>"), "x.svg"),
    }, content_type="multipart/form-data")  # fmt: skip
    assert response.status_code == 422 and "PNG or JPEG" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.query(ProviderProfile).one().display_name == "Before"
    empty = post(staff_client, "/staff/settings/provider", data={"display_name": "  "})
    assert empty.status_code == 422


def test_provider_settings_are_staff_only(client, auth, merchant_admin):
    auth.login(merchant_admin.email)
    assert client.get("/staff/settings/provider").status_code in (403, 404)


def test_seed_demo_names_the_provider(runner):
    result = runner.invoke(args=["seed-demo"])
    assert result.exit_code == 0, result.output
    row = db.session.query(ProviderProfile).one()
    assert row.display_name and row.logo.startswith(b"\x89PNG")
    runner.invoke(args=["seed-demo"])  # idempotent
    assert db.session.query(ProviderProfile).count() == 1


def _ticks(svg: str, fill_free: bool = True) -> list[str]:
    pattern = r'<text class="chart-tick" x="[\d.]+" y="[\d.]+" text-anchor="end">([^<]*)</text>'
    return re.findall(pattern, svg)


def test_small_counts_get_whole_number_ticks_without_repeats():
    from app.services.console import charts

    for top in range(0, 40):
        svg = charts.bars_with_line(["2026-10", "2026-11"], [top, 0], [top, top + 2],
                                    title="t", bar_label="new", line_label="total")  # fmt: skip
        left = [t for t in _ticks(svg) if not t.startswith("26")]
        assert len(left) == len(set(left)) >= 2, (top, left)
        assert all(t.replace(",", "").isdigit() for t in left)
        assert " max" not in svg  # no label drawn over the bars
        right = re.findall(
            r'<text class="chart-tick" x="[\d.]+" y="[\d.]+" fill="[^"]+">(\d+)<', svg
        )
        assert len(right) == len(set(right)) == len(left), (top, right)
        assert 'transform="rotate(90' in svg and ">total</text>" in svg  # the right axis is named


def test_notes_on_merchant_and_account_go_with_the_account(staff_client, staff):
    from app.models import Authorizer, StaffNote

    merchant = factories.make_merchant()
    account = make_account(merchant)
    r = post(staff_client, f"/staff/merchants/{merchant.id}/notes", data={"body": "Call Mr Li"})
    assert r.status_code == 303 and r.headers["Location"].endswith("#notes")
    post(staff_client, f"/staff/accounts/{account.id}/notes", data={"body": "Asked for set 3"})
    assert "Call Mr Li" in staff_client.get(f"/staff/merchants/{merchant.id}").get_data(True)
    page = staff_client.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    assert "Asked for set 3" in page and "Call Mr Li" not in page
    empty = post(staff_client, f"/staff/accounts/{account.id}/notes", data={"body": "   "})
    assert empty.status_code == 303 and db.session.query(StaffNote).count() == 2
    entry = db.session.query(AuditEntry).filter_by(action="staff.note_added").first()
    assert "Call Mr Li" not in str(entry.details)  # the log says who and when, not what
    purge.purge_authorizer(account.appid, reason="unauthorized")
    assert db.session.get(Authorizer, account.id) is None
    assert [n.body for n in db.session.query(StaffNote)] == ["Call Mr Li"]


def test_attention_categories_link_to_their_items(staff_client):
    merchant = factories.make_merchant()
    account = make_account(merchant)
    for kind in ("session_mismatch", "exchange_failed"):
        item = AttentionItem(kind=kind, dedupe_key=f"k:{kind}", details={"reason": "seeded"},
                             authorizer_appid=account.appid, created_at=clock.now())  # fmt: skip
        db.session.add(item)
    db.session.commit()
    overview = staff_client.get("/staff/").get_data(as_text=True)
    assert 'href="/staff/attention?kind=session_mismatch"' in overview
    listing = staff_client.get("/staff/attention?kind=session_mismatch").get_data(as_text=True)
    assert listing.count("/staff/accounts/attention/") == 1 and "demo data" in listing


def test_audit_log_is_in_time_order_across_pages(staff_client):
    from datetime import timedelta

    from app.services import audit

    base = clock.now()
    for minutes in (5, 1, 9, 3, 7, 2):  # written out of time order
        audit.record("test.entry", actor="seed", at_minute=minutes).at = base - timedelta(
            minutes=minutes
        )
    db.session.commit()
    from app.services.console import queries

    seen, before = [], None
    while True:
        rows, before = queries.list_audit(
            queries.AuditFilter(action="test.entry", before_id=before, per_page=2)
        )
        seen += [r.details["at_minute"] for r in rows]
        if before is None:
            break
    assert seen == [1, 2, 3, 5, 7, 9]


def test_permission_filter_groups_sets_by_account_type(staff_client):
    page = staff_client.get("/staff/accounts/").get_data(as_text=True)
    select = page[
        page.index('name="set_id"') : page.index("</select>", page.index('name="set_id"'))
    ]
    assert select.count("<optgroup") == 2
    assert 'label="Official Account"' in select and 'label="Mini Program"' in select


# --- stored values in words (issue 14): attention details, resolutions, health, audit ---

WORDS = {
    "zh_CN": {"reason": "原因", "wrong_account": "授权了另一个账号", "holder": "持有该账号的商户",
              "push": "微信推送", "yes": "是", "dismissed": "已忽略：重复",
              "assigned": "已分配给商户：",
              "total": "合计", "failed": "失败", "ticket": "票据", "ok": "正常", "error": "错误",
              "email": "邮箱", "opened": "告警产生", "delivered": "已投递", "critical": "严重",
              "system": "系统", "account": "账号"},
    "en": {"reason": "Reason", "wrong_account": "a different account was authorized",
           "holder": "Merchant holding the account", "push": "WeChat push", "yes": "Yes",
           "dismissed": "Dismissed: duplicate", "assigned": "Assigned to a merchant: ",
           "total": "in total", "failed": "Failed", "ticket": "Ticket", "ok": "OK",
           "error": "Error", "email": "Email", "opened": "Alert opened", "delivered": "Delivered",
           "critical": "Critical", "system": "System", "account": "Account"},
}  # fmt: skip
RAW_DETAILS = ["reason", "owner_merchant_id", "source", "auth_time", "has_refresh_token",
               "wrong_account", "True", "None"]  # fmt: skip


def _raw_words(text: str, words) -> list[str]:
    return [word for word in words if re.search(rf"(?<![\w/-]){word}(?![\w/-])", text)]


def _item(kind, appid, details, **extra):
    item = AttentionItem(kind=kind, dedupe_key=f"words:{kind}:{appid}", authorizer_appid=appid,
                         appid_hash=appid_ref(appid), details=details, created_at=clock.now(),
                         **extra)  # fmt: skip
    db.session.add(item)
    db.session.commit()
    return item


@pytest.mark.parametrize("locale", ["zh_CN", "en"])
def test_resolve_page_names_each_detail_in_the_page_language(staff_client, staff, locale):
    words = WORDS[locale]
    staff.locale = locale
    holder = factories.make_merchant(name="外滩面包 Holder")
    account = make_account(factories.make_merchant())
    mismatch = _item("session_mismatch", account.appid,
                     {"reason": "wrong_account", "owner_merchant_id": holder.id})  # fmt: skip
    text = visible_text(staff_client.get(f"/staff/accounts/attention/{mismatch.id}").get_data(True))
    assert _raw_words(text, RAW_DETAILS) == []
    assert words["reason"] in text and words["wrong_account"] in text
    assert words["holder"] in text and "外滩面包 Holder" in text

    unknown = _item("unknown_authorizer", "wxwords000000001",
                    {"auth_time": 1700000000, "has_refresh_token": True})  # fmt: skip
    text = visible_text(staff_client.get(f"/staff/accounts/attention/{unknown.id}").get_data(True))
    assert _raw_words(text, RAW_DETAILS + ["1700000000"]) == []
    assert "2023" in text and words["yes"] in text

    unsolicited = _item("unsolicited_authorization", "wxwords000000002", {"source": "push"})
    page = staff_client.get(f"/staff/accounts/attention/{unsolicited.id}").get_data(True)
    text = visible_text(page)
    assert _raw_words(text, RAW_DETAILS) == [] and words["push"] in text
    assert locale == "en" or _raw_words(text, ["push"]) == []


@pytest.mark.parametrize("locale", ["zh_CN", "en"])
def test_resolved_items_say_how_in_the_page_language(staff_client, staff, locale):
    words = WORDS[locale]
    staff.locale = locale
    target = factories.make_merchant(name="西湖茶社 Target")
    account = make_account(factories.make_merchant())
    dismissed = make_attention(account, kind="needs_reauthorization")
    post(staff_client, f"/staff/accounts/attention/{dismissed.id}/dismiss", {"note": "重复"}
         if locale == "zh_CN" else {"note": "duplicate"})  # fmt: skip
    assigned = make_attention(account, kind="session_mismatch")
    post(
        staff_client, f"/staff/accounts/attention/{assigned.id}/assign", {"merchant_id": target.id}
    )
    text = visible_text(staff_client.get(f"/staff/accounts/{account.id}").get_data(True))
    assert words["dismissed"] in text
    assert words["assigned"] + "西湖茶社 Target" in text
    assert "assigned to merchant" not in text and "dismissed:" not in text  # the stored words


@pytest.mark.parametrize("locale", ["zh_CN", "en"])
def test_health_page_names_outcomes_channels_and_events(app, staff_client, staff, locale):
    from app.models import AlertNotification, HealthAlert, JobRun

    words = WORDS[locale]
    staff.locale = locale
    app.config["GRANTDESK_ALERT_EMAILS"] = ["ops@example.com"]
    account = make_account(factories.make_merchant())
    make_event(account.appid, outcome="failed", info_type="component_verify_ticket")
    now = clock.now()
    db.session.add_all([
        JobRun(name="sweep", started_at=now, outcome="ok", runs=1),
        JobRun(name="reconcile", started_at=now, outcome="error", runs=1, failures=1),
        HealthAlert(kind="ticket_rejected", component_appid=default_appid(), first_seen=now,
                    last_seen=now, details={}),
        AlertNotification(dedupe_key="words:1", kind="ticket_rejected", event="opened",
                          channel="email", payload={}, status="delivered"),
    ])  # fmt: skip
    db.session.commit()
    text = visible_text(staff_client.get("/staff/health").get_data(True))
    for word in ("total", "failed", "ok", "error", "email", "opened", "delivered", "critical"):
        assert words[word] in text, word
    assert re.search(r"(Last push|最近推送).{0,60}· " + words["ticket"], text, re.S)
    raw = ["total", "failed", "ok", "error", "email", "opened", "delivered", "critical"]
    assert locale == "en" or _raw_words(text, raw) == []  # English words overlap the codes


@pytest.mark.parametrize("locale", ["zh_CN", "en"])
def test_audit_log_names_the_system_actor_and_targets(staff_client, staff, locale):
    from app.services import audit

    words = WORDS[locale]
    staff.locale = locale
    account = make_account(factories.make_merchant())
    audit.record("test.entry", target_type="authorizer", target_id=account.id)
    db.session.commit()
    text = visible_text(staff_client.get("/staff/audit").get_data(True))
    assert f"{words['account']} {account.id}" in text and words["system"] in text
    assert _raw_words(text, ["system", "authorizer"]) == []


def test_every_audit_target_type_the_code_writes_has_a_label():
    from pathlib import Path

    from app.labels import VOCABULARIES

    source = "\n".join(p.read_text() for p in Path("app").rglob("*.py"))
    targets = set(re.findall(r'target_type="(\w+)"', source))
    assert targets and targets <= VOCABULARIES["audit_target"].keys(), targets


@pytest.mark.parametrize("count", [1, 2])
def test_counts_on_staff_pages_use_proper_plurals(app, staff_client, count):
    from app.models import HealthAlert

    merchant = factories.make_merchant(name="Plural Tea")
    for _ in range(count):
        make_account(merchant)
    db.session.add(HealthAlert(kind="ticket_rejected", component_appid=default_appid(),
                               first_seen=clock.now(), last_seen=clock.now(), count=count,
                               details={}))  # fmt: skip
    db.session.commit()
    noun = "account" if count == 1 else "accounts"
    listing = words(staff_client.get(f"/staff/accounts/?merchant={merchant.id}").text)
    assert f"of {count} {noun} " in listing
    assert (
        "Apply to the 1 account matching" if count == 1 else "Apply to all 2 accounts"
    ) in listing
    merchants = words(staff_client.get("/staff/merchants?q=Plural").text)
    assert "1 merchant " in merchants and "1 merchants" not in merchants
    overview = words(staff_client.get("/staff/").text)
    assert ("seen 1 time " if count == 1 else "seen 2 times") in overview


def words(html: str) -> str:
    """The visible text with every run of whitespace as one space, and a space at the end."""
    return " ".join(visible_text(html).split()) + " "
