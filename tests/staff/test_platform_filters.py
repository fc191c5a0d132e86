"""Accounts per platform (#16), the console's side: every list filters by platform (a select
shown only when there are several), rows and pages name an account's platform, an account's
events, items and sessions are its own platform's, and administrators choose the platforms a
merchant may authorize."""

import re

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEntry, StaffRole
from app.services.console import queries
from app.services.platform import platforms
from tests import factories
from tests.conftest import csrf_token
from tests.merchant.conftest import make_session
from tests.staff.conftest import make_account, make_attention, make_event

B_APPID = "wx5b7c9d1e3f5a7b9c"
B_KEY = "bcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH"


def html(response) -> str:
    return response.get_data(as_text=True)


def rows_platforms(page: str) -> list[str]:
    return re.findall(r'data-platform="([^"]+)"', page)


@pytest.fixture
def two(app):
    platforms.add(
        component_appid=B_APPID, appsecret="platformbsecret0123456789", token="platformbtoken",
        encoding_aes_key=B_KEY, name="Mini Program studio",
    )  # fmt: skip
    db.session.commit()
    return {"a": platforms.default_appid(), "b": B_APPID}


@pytest.fixture
def fleet(two):
    """One merchant with an account on each platform, the same appid held on both."""
    merchant = factories.make_merchant()
    on_a = make_account(merchant, appid="wxsharedappid00001", nick_name="Shop on A")
    with platforms.using(two["b"]):
        on_b = make_account(merchant, appid="wxsharedappid00001", nick_name="Shop on B")
    return {"merchant": merchant, "a": on_a, "b": on_b}


@pytest.fixture
def admin_client(client, auth):
    admin = factories.make_staff(staff_role=StaffRole.ADMIN)
    auth.login(admin.email)
    return client


# --- one platform: the console is as it was ---


def test_with_one_platform_no_list_shows_a_platform_select_or_column(staff_client, app):
    merchant = factories.make_merchant()
    account = make_account(merchant)
    make_attention(account)
    make_session(merchant)
    for path in ("/staff/accounts/", "/staff/attention", "/staff/sessions",
                 f"/staff/accounts/{account.id}", f"/staff/merchants/{merchant.id}"):  # fmt: skip
        page = html(staff_client.get(path))
        assert 'name="platform"' not in page and "data-platform=" not in page, path
        assert 'id="platforms"' not in page and 'id="account-platform"' not in page, path


# --- two platforms: filters ---


def test_the_accounts_list_filters_by_platform(staff_client, fleet, two):
    page = html(staff_client.get("/staff/accounts/"))
    assert '<select id="platform" name="platform">' in page
    assert sorted(rows_platforms(page)) == sorted([two["a"], two["b"]])
    assert "Mini Program studio" in page

    only_b = html(staff_client.get(f"/staff/accounts/?platform={two['b']}"))
    assert rows_platforms(only_b) == [two["b"]] and "Shop on B" in only_b
    assert "Shop on A" not in only_b
    # Pager, sort and export links keep the filter.
    assert f"platform={two['b']}" in only_b.split('id="results"', 1)[1]
    # An unknown value is no filter at all.
    anything = html(staff_client.get("/staff/accounts/?platform=wxnotaplatform00"))
    assert sorted(rows_platforms(anything)) == sorted([two["a"], two["b"]])


def test_the_csv_export_filters_by_platform_and_names_it(staff_client, fleet, two):
    text = html(staff_client.get(f"/staff/accounts/export.csv?platform={two['a']}", buffered=True))
    lines = text.strip().splitlines()
    assert lines[0].endswith(",component_appid") and len(lines) == 2
    assert lines[1].endswith(two["a"])


def test_the_filter_is_plain_sql_too(fleet, two):
    f = queries.AccountFilter(component_appid=two["b"])
    assert queries.count_accounts(f) == 1
    assert [row["id"] for row in queries.list_accounts(f).rows] == [fleet["b"].id]


def test_attention_items_filter_by_platform(staff_client, fleet, two):
    make_attention(fleet["a"])
    with platforms.using(two["b"]):
        make_attention(fleet["b"])
    page = html(staff_client.get("/staff/attention"))
    assert 'id="platform-filter"' in page
    assert sorted(rows_platforms(page)) == sorted([two["a"], two["b"]])
    only_a = html(staff_client.get(f"/staff/attention?platform={two['a']}"))
    assert rows_platforms(only_a) == [two["a"]]
    # The kind is kept beside the platform.
    kinds = html(staff_client.get(f"/staff/attention?kind=session_mismatch&platform={two['b']}"))
    assert rows_platforms(kinds) == [two["b"]]
    assert 'name="kind" value="session_mismatch"' in kinds


def test_pending_sessions_filter_by_platform(staff_client, fleet, two):
    make_session(fleet["merchant"])
    with platforms.using(two["b"]):
        make_session(fleet["merchant"])
        make_session(fleet["merchant"])
    page = html(staff_client.get("/staff/sessions"))
    assert sorted(rows_platforms(page)) == sorted([two["a"], two["b"], two["b"]])
    only_b = html(staff_client.get(f"/staff/sessions?platform={two['b']}"))
    assert rows_platforms(only_b) == [two["b"], two["b"]]
    assert "2 open authorization sessions" in only_b


# --- one account on two platforms ---


def test_an_accounts_page_shows_its_platform_and_only_its_platforms_rows(staff_client, fleet, two):
    make_event(fleet["a"].appid, info_type="updateauthorized")
    with platforms.using(two["b"]):
        make_event(fleet["b"].appid, info_type="unauthorized")
        make_attention(fleet["b"])
    page = html(staff_client.get(f"/staff/accounts/{fleet['b'].id}"))
    assert 'id="account-platform"' in page and "Mini Program studio" in page
    assert [e.info_type for e in queries.account_events(fleet["b"])] == ["unauthorized"]
    assert [e.info_type for e in queries.account_events(fleet["a"])] == ["updateauthorized"]
    assert len(queries.account_attention(fleet["b"])) == 1
    assert queries.account_attention(fleet["a"]) == []


def test_after_dismissing_an_item_staff_land_on_its_platforms_account(fleet, two, client, auth):
    operator = factories.make_staff(staff_role=StaffRole.OPERATOR)
    auth.login(operator.email)
    with platforms.using(two["b"]):
        item = make_attention(fleet["b"])
    token = csrf_token(client, f"/staff/accounts/attention/{item.id}")
    response = client.post(f"/staff/accounts/attention/{item.id}/dismiss",
                           data={"csrf_token": token, "note": "seen"})  # fmt: skip
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/staff/accounts/{fleet['b'].id}")


def test_the_accounts_attention_flag_is_its_platforms(fleet, two):
    with platforms.using(two["b"]):
        make_attention(fleet["b"])
    rows = queries.list_accounts(queries.AccountFilter(merchant_id=fleet["merchant"].id)).rows
    flags = {row["component_appid"]: row["needs_attention"] for row in rows}
    assert flags == {two["a"]: False, two["b"]: True}
    flagged = queries.list_accounts(queries.AccountFilter(attention=True)).rows
    assert [row["id"] for row in flagged] == [fleet["b"].id]


# --- a merchant's platforms ---


def test_administrators_restrict_a_merchant_to_one_platform(admin_client, fleet, two):
    merchant = fleet["merchant"]
    page = html(admin_client.get(f"/staff/merchants/{merchant.id}"))
    assert 'id="platforms"' in page and re.search(r'<input checked[^>]*value="all"', page)
    token = csrf_token(admin_client, f"/staff/merchants/{merchant.id}")
    url = f"/staff/merchants/{merchant.id}/platforms"

    refused = admin_client.post(url, data={"csrf_token": token, "scope": "chosen"})
    assert refused.status_code == 422 and "Tick at least one platform." in html(refused)
    tampered = admin_client.post(
        url, data={"csrf_token": token, "scope": "chosen", "platforms": "wxnotaplatform00"}
    )
    assert tampered.status_code == 422
    db.session.refresh(merchant)
    assert merchant.platform_appids is None

    saved = admin_client.post(
        url, data={"csrf_token": token, "scope": "chosen", "platforms": two["b"]}
    )
    assert saved.status_code == 303
    db.session.refresh(merchant)
    assert merchant.platform_appids == [two["b"]]
    assert [row.component_appid for row in platforms.platforms_for_merchant(merchant)] == [two["b"]]
    entry = db.session.scalar(
        select(AuditEntry).where(AuditEntry.action == "merchant.platforms_set")
    )
    assert entry.merchant_id == merchant.id and entry.details["platform_appids"] == [two["b"]]

    assert admin_client.post(url, data={"csrf_token": token, "scope": "all"}).status_code == 303
    db.session.refresh(merchant)
    assert merchant.platform_appids is None


def test_viewers_see_a_merchants_platforms_but_cannot_change_them(client, auth, fleet, two):
    auth.login(factories.make_staff(staff_role=StaffRole.VIEWER).email)
    merchant = fleet["merchant"]
    page = html(client.get(f"/staff/merchants/{merchant.id}"))
    assert 'id="merchant-platforms"' in page and "Every active platform" in page
    assert f'action="/staff/merchants/{merchant.id}/platforms"' not in page


def test_a_restricted_merchants_wizard_shows_no_choice(client, auth, fleet, two):
    staff = factories.make_staff(staff_role=StaffRole.ADMIN)
    platforms.set_merchant_platforms(fleet["merchant"], [two["a"]], actor=staff)
    db.session.commit()
    user = factories.make_merchant_admin(fleet["merchant"])
    auth.login(user.email)
    page = html(client.get("/merchant/connect"))
    assert 'name="platform"' not in page
