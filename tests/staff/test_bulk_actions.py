"""Issue 14 (staff): the resolve page offers only what fixes the item, "needs re-authorization"
counts agree, bulk actions on a filtered selection, and the pending-sessions list."""

import csv
import io
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AttentionItem, AuditEntry, Authorizer, GrantStatus, OutgoingMail
from app.services import clock
from app.services.console import bulk
from tests import factories
from tests.merchant.conftest import make_session
from tests.staff.conftest import make_account, make_attention, post


def audit_rows(action):
    return list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


# --- resolve page ------------------------------------------------------------------------------


def test_needs_reauthorization_item_does_not_offer_assign(staff_client):
    account = make_account(factories.make_merchant(), status=GrantStatus.NEEDS_REAUTHORIZATION)
    item = make_attention(account, kind="needs_reauthorization")
    page = staff_client.get(f"/staff/accounts/attention/{item.id}").get_data(as_text=True)
    assert f"/staff/accounts/attention/{item.id}/assign" not in page
    assert 'id="assign"' not in page and 'id="adopt"' not in page
    assert 'id="reauthorize"' in page
    assert f"/staff/accounts/bulk/notify?ids={account.id}" in page
    assert f"/staff/accounts/attention/{item.id}/dismiss" in page


def test_assign_is_refused_for_a_needs_reauthorization_item(staff_client):
    owner, other = factories.make_merchant(), factories.make_merchant()
    account = make_account(owner, status=GrantStatus.NEEDS_REAUTHORIZATION)
    item = make_attention(account, kind="needs_reauthorization")
    response = post(staff_client, f"/staff/accounts/attention/{item.id}/assign",
                    {"merchant_id": other.id})  # fmt: skip
    assert response.status_code == 303
    db.session.expire_all()
    assert db.session.get(Authorizer, account.id).merchant_id == owner.id
    assert db.session.get(AttentionItem, item.id).resolved_at is None
    assert audit_rows("staff.authorizer_assigned") == []


def test_session_mismatch_offers_assign_and_unknown_authorizer_offers_adopt(staff_client):
    account = make_account(factories.make_merchant())
    mismatch = make_attention(account, kind="session_mismatch")
    page = staff_client.get(f"/staff/accounts/attention/{mismatch.id}").get_data(as_text=True)
    assert f"/staff/accounts/attention/{mismatch.id}/assign" in page and 'id="adopt"' not in page

    unknown = AttentionItem(
        kind="unknown_authorizer", dedupe_key="unknown:wxnotheld0001",
        authorizer_appid="wxnotheld0001", details={}, created_at=clock.now(),
    )  # fmt: skip
    db.session.add(unknown)
    db.session.commit()
    page = staff_client.get(f"/staff/accounts/attention/{unknown.id}").get_data(as_text=True)
    assert f"/staff/accounts/attention/{unknown.id}/adopt" in page
    assert f"/staff/accounts/attention/{unknown.id}/assign" not in page


# --- counts agree ------------------------------------------------------------------------------


def _stat(page: str, label: str) -> int:
    match = re.search(r'stat-value">([\d,]+)</span><span class="stat-label">' + label, page)
    return int(match.group(1).replace(",", ""))


def test_needs_reauthorization_counts_agree_between_card_entry_and_list(staff_client):
    merchant = factories.make_merchant()
    # One needing re-authorization with its item, one whose item was dismissed, and two
    # re-authorized since (their items still open): two accounts need re-authorization.
    make_attention(make_account(merchant, status=GrantStatus.NEEDS_REAUTHORIZATION),
                   kind="needs_reauthorization")  # fmt: skip
    make_account(merchant, status=GrantStatus.NEEDS_REAUTHORIZATION)
    make_attention(make_account(merchant), kind="needs_reauthorization")
    make_attention(make_account(merchant), kind="needs_reauthorization")

    overview = staff_client.get("/staff/").get_data(as_text=True)
    card = _stat(overview, "Need re-authorization")
    entry = re.search(r"Needs re-authorization</a> <span class=\"muted\">(\d+) open", overview)
    listed = staff_client.get("/staff/accounts/?status=needs_reauthorization").get_data(
        as_text=True
    )
    total = int(re.search(r"of (\d+) accounts", listed).group(1))
    assert card == total == int(entry.group(1)) == 2


# --- bulk actions ------------------------------------------------------------------------------


def test_list_offers_the_bulk_bar_without_javascript(staff_client):
    account = make_account(factories.make_merchant())
    page = staff_client.get("/staff/accounts/?status=active").get_data(as_text=True)
    form = re.search(r'<form id="bulk" method="get".*?</form>', page, re.S).group(0)
    assert f'name="ids" value="{account.id}"' in form
    assert 'name="scope" value="all"' in form
    assert '<input type="hidden" name="status" value="active">' in form
    assert 'formaction="/staff/accounts/bulk/resync"' in form
    assert 'formaction="/staff/accounts/bulk/notify"' in form


def test_viewer_sees_only_export_and_cannot_confirm(client, auth):
    from app.models import StaffRole

    viewer = factories.make_staff(staff_role=StaffRole.VIEWER)
    account = make_account(factories.make_merchant())
    auth.login(viewer.email)
    page = client.get("/staff/accounts/").get_data(as_text=True)
    assert "/staff/accounts/bulk/" not in page and 'name="bulk"' in page
    assert client.get(f"/staff/accounts/bulk/resync?ids={account.id}").status_code == 403


def test_bulk_export_of_the_ticked_accounts_reuses_the_csv(staff_client):
    merchant = factories.make_merchant()
    first, second, third = (make_account(merchant) for _ in range(3))
    response = staff_client.get(
        f"/staff/accounts/export.csv?bulk=1&merchant={merchant.id}&ids={first.id}&ids={third.id}",
        buffered=True,
    )
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert response.mimetype == "text/csv"
    assert sorted(r[0] for r in rows[1:]) == sorted([first.appid, third.appid])

    everything = staff_client.get(f"/staff/accounts/export.csv?bulk=1&merchant={merchant.id}"
                                  "&scope=all", buffered=True).get_data(as_text=True)  # fmt: skip
    assert {r[0] for r in list(csv.reader(io.StringIO(everything)))[1:]} == {
        first.appid, second.appid, third.appid
    }  # fmt: skip
    nothing = staff_client.get(f"/staff/accounts/export.csv?bulk=1&merchant={merchant.id}")
    assert nothing.status_code == 303 and "/staff/accounts/" in nothing.headers["Location"]


def test_bulk_notify_emails_each_merchants_active_admins(app, staff_client):
    app.config["MAIL_SERVER"] = "smtp.invalid"  # keep the bodies (queued, not skipped)
    told = factories.make_merchant(name="Told")
    admin = factories.make_merchant_admin(told)
    factories.make_merchant_admin(told, disabled_at=clock.now())  # not active: not emailed
    silent = factories.make_merchant(name="Silent")  # no admin who could be told
    accounts = [
        make_account(told, status=GrantStatus.NEEDS_REAUTHORIZATION),
        make_account(silent, status=GrantStatus.NEEDS_REAUTHORIZATION),
        make_account(None, status=GrantStatus.NEEDS_REAUTHORIZATION),
    ]
    untouched = make_account(told)  # active: not in the filter
    query = "status=needs_reauthorization&scope=all"

    confirm = staff_client.get(f"/staff/accounts/bulk/notify?{query}")
    page = confirm.get_data(as_text=True)
    assert confirm.status_code == 200 and "3 accounts" in page
    assert all(a.appid in page for a in accounts) and untouched.appid not in page
    assert db.session.scalar(select(func.count()).select_from(OutgoingMail)) == 0

    confirm_card = page[page.index('id="bulk-confirm"') :]
    action = re.search(r'<form method="post" action="([^"]+)"', confirm_card).group(1)
    action = action.replace("&amp;", "&")
    assert action.startswith("/staff/accounts/bulk/notify?")
    response = post(staff_client, action, follow_redirects=True)
    assert "emailed for 1 account. 2 accounts could not be emailed" in response.get_data(
        as_text=True
    )
    messages = list(db.session.scalars(select(OutgoingMail)))
    assert [m.to_addresses for m in messages] == [[admin.email]]
    assert f"/merchant/accounts/{accounts[0].id}/update" in messages[0].text_body
    assert "Re-authorization needed" in messages[0].subject
    [run] = audit_rows("staff.bulk_notify")
    assert (run.details["requested"], run.details["succeeded"], run.details["failed"]) == (3, 1, 2)
    assert [e.target_id for e in audit_rows("staff.reauthorization_requested")] == [
        str(accounts[0].id)
    ]


SUMMARY = {
    ("en", 1): "Re-authorization request emailed for 1 account.",
    ("en", 2): "Re-authorization request emailed for 2 accounts.",
    ("zh_CN", 1): "已为 1 个账号发送重新授权邮件。",
    ("zh_CN", 2): "已为 2 个账号发送重新授权邮件。",
}
FAILED = {"en": "1 account could not be emailed", "zh_CN": "1 个账号未能发送"}


@pytest.mark.parametrize("emailed", [1, 2])
@pytest.mark.parametrize("locale", ["en", "zh_CN"])
def test_bulk_notify_summary_counts_in_proper_plurals(app, staff_client, staff, locale, emailed):
    app.config["MAIL_SERVER"] = "smtp.invalid"
    staff.locale = locale
    told = factories.make_merchant()
    factories.make_merchant_admin(told)
    accounts = [make_account(told, status=GrantStatus.NEEDS_REAUTHORIZATION)
                for _ in range(emailed)]  # fmt: skip
    ids = "&".join(f"ids={a.id}" for a in accounts)
    text = post(staff_client, f"/staff/accounts/bulk/notify?{ids}", follow_redirects=True)
    page = text.get_data(as_text=True)
    assert SUMMARY[locale, emailed] in page
    assert FAILED[locale] not in page  # nothing failed: no failure sentence
    orphan = make_account(None, status=GrantStatus.NEEDS_REAUTHORIZATION)
    page = post(staff_client, f"/staff/accounts/bulk/notify?{ids}&ids={orphan.id}",
                follow_redirects=True).get_data(as_text=True)  # fmt: skip
    assert SUMMARY[locale, emailed] + ("" if locale == "zh_CN" else " ") + FAILED[locale] in page


def test_bulk_actions_need_a_selection_and_csrf(staff_client):
    account = make_account(factories.make_merchant())
    answer = staff_client.get("/staff/accounts/bulk/resync?status=active")
    assert answer.status_code == 303
    assert staff_client.post(f"/staff/accounts/bulk/resync?ids={account.id}").status_code == 400
    assert audit_rows("staff.bulk_resync") == []


def test_bulk_selection_is_capped(app, staff_client, monkeypatch):
    monkeypatch.setattr(bulk, "BULK_LIMIT", 2)
    merchant = factories.make_merchant()
    for _ in range(3):
        make_account(merchant)
    answer = post(staff_client, f"/staff/accounts/bulk/resync?merchant={merchant.id}&scope=all",
                  follow_redirects=True)  # fmt: skip
    assert "At most 2 accounts at once" in answer.get_data(as_text=True)
    assert audit_rows("staff.bulk_resync") == []


@pytest.mark.usefixtures("live_portal")
def test_bulk_resync_reads_each_account_from_wechat(sandbox, staff_client, live_portal):
    sandbox.push_ticket()
    sandbox.flush()
    held = sandbox.authorize(sandbox.component_token(), scenario="fresh")["account"]
    sandbox.flush()
    merchant = factories.make_merchant()
    db.session.expire_all()
    account = db.session.scalar(select(Authorizer).where(Authorizer.appid == held["appid"]))
    assert account is not None and account.merchant_id is None  # WeChat's push: held, unassigned
    account.merchant_id, account.nick_name = merchant.id, "stale name"
    gone = make_account(merchant, appid="wxgone00000000001")  # WeChat does not know it
    db.session.commit()

    url = f"/staff/accounts/bulk/resync?merchant={merchant.id}&ids={account.id}&ids={gone.id}"
    page = staff_client.get(url).get_data(as_text=True)
    assert "2 accounts" in page
    response = post(staff_client, url, follow_redirects=True)
    assert "1 succeeded, 1 failed" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Authorizer, account.id).nick_name != "stale name"
    assert db.session.get(Authorizer, gone.id).nick_name.startswith("测试公众号")
    [run] = audit_rows("staff.bulk_resync")
    assert run.details["failed_ids"] == [gone.id]
    outcomes = {e.target_id: e.details["outcome"] for e in audit_rows("staff.authorizer_resynced")}
    assert outcomes == {str(account.id): "ok", str(gone.id): "not_found"}


# --- pending sessions --------------------------------------------------------------------------


def test_pending_sessions_card_links_to_a_list_that_agrees(staff_client):
    merchant = factories.make_merchant(name="会话商户 Sessions")
    admin = factories.make_merchant_admin(merchant)
    make_session(merchant, admin)
    make_session(merchant, admin)
    expired = make_session(merchant, admin)
    expired.expires_at = clock.now() - timedelta(minutes=1)
    db.session.commit()

    overview = staff_client.get("/staff/").get_data(as_text=True)
    assert 'href="/staff/sessions"' in overview
    card = _stat(overview, "Pending sessions")
    page = staff_client.get("/staff/sessions").get_data(as_text=True)
    rows = re.findall(r"<tr><td[^>]*><a href=\"/staff/merchants/", page)
    assert card == len(rows) == 2
    assert "会话商户 Sessions" in page
    assert expired.link_token not in page
