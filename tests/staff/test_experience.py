"""Staff pages say stored values in the page's language, show partial grants, and keep the
per-page select honest; the provider profile (name, logo) is set here and used everywhere."""

import io
import re

from app.extensions import db
from app.models import AttentionItem, AuditEntry, GrantChange, ProviderProfile, SessionStatus
from app.models.grants import appid_ref
from app.services import clock
from app.services.platform import provider
from tests.merchant.conftest import make_session
from tests.staff.conftest import factories, make_account, make_event, post

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
