"""Merchant pages over the test client: wizard, live status, result, update, revoke, delete."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEntry, AuthorizationSession, Authorizer, SessionStatus
from app.services import clock
from app.services.authorization import purge, sessions
from tests.conftest import csrf_token
from tests.merchant.conftest import HX, complete, make_account, make_session


def html(response) -> str:
    return response.get_data(as_text=True)


# --- landing ------------------------------------------------------------------------------------


def test_empty_state_explains_connecting(logged_in):
    page = html(logged_in.get("/merchant/"))
    assert "No accounts connected yet" in page and 'id="connect-account"' in page


def test_accounts_show_badge_gap_and_one_click_request(logged_in, admin):
    make_account(admin.merchant, set_ids=[1, 2], nick_name="Tea House")
    page = html(logged_in.get("/merchant/"))
    assert "Tea House" in page and "Partially authorized" in page and ">Active<" not in page
    assert "Missing: Account services" in page
    assert "request-missing" in page


def test_badges_for_pending_and_needs_reauthorization(logged_in, admin):
    from app.models import GrantStatus

    pending = make_account(admin.merchant, nick_name="Pending One")
    session = make_session(admin.merchant, admin, biz_appid=pending.appid)
    pending.grant.pending_session_id = session.id
    broken = make_account(admin.merchant, nick_name="Broken One")
    broken.grant.status = GrantStatus.NEEDS_REAUTHORIZATION
    db.session.commit()
    page = html(logged_in.get("/merchant/"))
    assert "Update pending" in page and f"/merchant/sessions/{session.public_id}" in page
    assert "Needs re-authorization" in page and "Authorize again" in page


# --- wizard ---------------------------------------------------------------------------------------


def test_step1_requires_a_type(logged_in):
    response = logged_in.get("/merchant/connect/permissions")
    assert response.status_code == 422 and "Choose the kind of account." in html(response)


def test_step2_offers_platform_sets_with_required_preselected(logged_in):
    page = html(logged_in.get("/merchant/connect/permissions?type=official_account"))
    for set_id in (1, 2, 3, 4, 7, 11, 15):
        assert f'id="set-{set_id}"' in page
    assert 'id="set-17"' not in page and 'id="set-8"' not in page  # other type / not offered
    assert 'value="1" checked' in page and 'value="4" checked' not in page
    assert "Only one provider can hold this permission" in page  # set 4 is exclusive


def test_step2_mini_program_sets(logged_in):
    page = html(logged_in.get("/merchant/connect/permissions?type=mini_program"))
    assert 'value="17" checked' in page and 'value="18" checked' in page
    assert 'id="set-1"' not in page


def test_step3_refuses_no_sets_and_foreign_sets(logged_in):
    response = logged_in.get("/merchant/connect/consent?type=official_account")
    assert response.status_code == 422 and "Choose at least one permission." in html(response)
    response = logged_in.get("/merchant/connect/consent?type=official_account&sets=17")
    assert response.status_code == 422


def test_consent_needs_the_tick_and_records_who_and_when(logged_in, admin):
    token = csrf_token(logged_in, "/merchant/connect/consent?type=official_account&sets=1&sets=2")
    data = {"csrf_token": token, "type": "official_account", "sets": ["1", "2"]}
    response = logged_in.post("/merchant/connect/consent", data=data)
    assert response.status_code == 422 and "Please tick the box" in html(response)
    assert db.session.scalar(select(AuthorizationSession)) is None

    response = logged_in.post("/merchant/connect/consent", data={**data, "agree": "y"})
    assert response.status_code == 303
    session = db.session.scalar(select(AuthorizationSession))
    assert response.headers["Location"].endswith(f"/merchant/sessions/{session.public_id}")
    assert session.merchant_id == admin.merchant_id and session.requested_set_ids == [1, 2]
    assert session.auth_type == 1 and session.initiated_by_id == admin.id
    record = db.session.scalar(
        select(AuditEntry).where(AuditEntry.action == "authorization_session.consented")
    )
    assert record.actor_user_id == admin.id and record.target_id == str(session.id)
    assert record.details["consent_version"] and record.details["consented_at"]


def test_consent_with_htmx_answers_hx_location(logged_in):
    token = csrf_token(logged_in, "/merchant/connect/consent?type=mini_program&sets=17")
    data = {"csrf_token": token, "type": "mini_program", "sets": ["17"], "agree": "y"}
    response = logged_in.post("/merchant/connect/consent", data=data, headers=HX)
    assert response.status_code == 204
    assert response.headers["HX-Location"].startswith("/merchant/sessions/")


def test_consent_post_without_csrf_is_refused(logged_in):
    data = {"type": "official_account", "sets": ["1"], "agree": "y"}
    assert logged_in.post("/merchant/connect/consent", data=data).status_code == 400


# --- connect step, status panel, result ----------------------------------------------------------


def test_connect_step_shows_qr_link_and_expiry(logged_in, admin):
    session = make_session(admin.merchant, admin)
    page = html(logged_in.get(f"/merchant/sessions/{session.public_id}"))
    link = sessions.connect_url(session)
    assert "<svg" in page and f'value="{link}"' in page and 'id="open-pc"' in page
    assert 'hx-trigger="every 2s"' in page and "The link works until" in page
    assert "<script>" not in page and "onclick" not in page


def test_status_fragment_both_ways(logged_in, admin):
    session = make_session(admin.merchant, admin)
    url = f"/merchant/sessions/{session.public_id}"
    fragment = logged_in.get(url, headers={**HX, "HX-Target": "status"})
    assert fragment.status_code == 200
    body = html(fragment)
    assert body.lstrip().startswith('<section id="status"') and "<html" not in body
    assert "<svg" not in body  # the QR is not re-sent every two seconds
    full = logged_in.get(url)
    assert "<html" in html(full) and 'id="status"' in html(full)
    assert "HX-Request" in fragment.headers["Vary"]


def test_polling_stops_with_286_and_swaps_in_the_result(logged_in, admin):
    account = make_account(admin.merchant, set_ids=[1, 2], nick_name="Noodle Bar")
    session = complete(make_session(admin.merchant, admin, set_ids=[1, 2, 3]), account, [1, 2])
    url = f"/merchant/sessions/{session.public_id}"
    response = logged_in.get(url, headers={**HX, "HX-Target": "status"})
    assert response.status_code == 286
    assert response.headers["HX-Retarget"] == "#session"
    body = html(response)
    swapped = body.lstrip().split("</title>", 1)  # a <title> first: htmx retitles the tab
    assert swapped[0].startswith("<title>") and swapped[1].lstrip().startswith('<div id="session"')
    assert "Noodle Bar" in body
    page = html(logged_in.get(url))  # a reload shows the same result as a whole page
    assert "<html" in page and "Noodle Bar" in page
    assert "Some permissions were not granted" in page and 'id="request-missing"' in page
    assert "it was not ticked on WeChat" in page


def test_exclusive_gap_is_explained(logged_in, admin):
    account = make_account(admin.merchant, set_ids=[1])
    session = complete(make_session(admin.merchant, admin, set_ids=[1, 4]), account, [1])
    page = html(logged_in.get(f"/merchant/sessions/{session.public_id}"))
    assert "only one provider can hold this permission" in page
    # The likelier cause comes first: WeChat lists the set unticked, the merchant did not tick it.
    assert "it was either not ticked on WeChat's page, or another provider holds it" in page


@pytest.mark.parametrize(
    "fields, text",
    [
        ({"status": SessionStatus.FAILED, "failure_reason": "code_invalid"}, "could not confirm"),
        (
            {"status": SessionStatus.MISMATCH, "failure_reason": "wrong_account"},
            "different account",
        ),
        (
            {"status": SessionStatus.MISMATCH, "failure_reason": "bound_to_other_merchant"},
            "another merchant",
        ),  # noqa: E501
    ],
)
def test_problem_results(logged_in, admin, fields, text):
    session = make_session(admin.merchant, admin, **fields)
    page = html(logged_in.get(f"/merchant/sessions/{session.public_id}"))
    assert text in page and "Start again" in page


def test_expired_session(logged_in, admin):
    session = make_session(admin.merchant, admin, set_ids=[1, 2])
    session.expires_at = clock.now() - timedelta(seconds=1)
    db.session.commit()
    url = f"/merchant/sessions/{session.public_id}"
    response = logged_in.get(url, headers={**HX, "HX-Target": "status"})
    assert response.status_code == 286 and "This link has expired" in html(response)
    page = html(logged_in.get(url))
    assert "/merchant/connect/permissions?type=official_account&amp;sets=1&amp;sets=2" in page


def test_request_missing_opens_a_pinned_update_session(logged_in, admin):
    account = make_account(admin.merchant, set_ids=[1, 2])
    token = csrf_token(logged_in, "/merchant/")
    response = logged_in.post(
        f"/merchant/accounts/{account.id}/request-missing", data={"csrf_token": token}
    )
    assert response.status_code == 303
    session = db.session.scalar(select(AuthorizationSession))
    assert session.biz_appid == account.appid and session.requested_set_ids == [1, 2, 3]
    assert db.session.get(Authorizer, account.id).grant.pending_session_id == session.id
    page = html(logged_in.get(response.headers["Location"]))
    assert "This link only works for" in page
    # WeChat pre-ticks only what is granted: the page names the set to tick (defect 1).
    plan = page[page.index('id="wechat-plan"') :]
    assert "Tick “Account services”." in plan
    keep = plan[plan.index('id="plan-keep"') : plan.index("</p>", plan.index('id="plan-keep"'))]
    assert "User management" in keep and "Account services" not in keep


# --- detail, update ------------------------------------------------------------------------------


def test_account_detail(logged_in, admin):
    account = make_account(admin.merchant, set_ids=[1, 2, 3], nick_name="Dumpling Co")
    page = html(logged_in.get(f"/merchant/accounts/{account.id}"))
    assert "Dumpling Co" in page and "Connected to your provider" in page
    assert "Working normally" in page and account.appid in page


def test_update_diff_fragment_both_ways(logged_in, admin):
    account = make_account(admin.merchant, set_ids=[1, 2, 3])
    url = f"/merchant/accounts/{account.id}/update"
    token = csrf_token(logged_in, url)
    data = {"csrf_token": token, "sets": ["1", "2", "7"], "preview": "1"}
    fragment = logged_in.post(url, data=data, headers={**HX, "HX-Target": "diff"})
    body = html(fragment)
    assert fragment.status_code == 200 and body.lstrip().startswith('<section id="diff"')
    assert "Broadcasts and notifications" in body and "Account services" in body
    assert "WeChat's page will not list these permissions" in body  # what it really shows
    page = html(logged_in.post(url, data=data))
    assert "<html" in page and "You will remove:" in page
    assert db.session.scalar(select(AuthorizationSession)) is None  # preview changes nothing


def test_update_requires_consent_then_opens_session(logged_in, admin):
    account = make_account(admin.merchant, set_ids=[1, 2, 3])
    url = f"/merchant/accounts/{account.id}/update"
    token = csrf_token(logged_in, url)
    response = logged_in.post(url, data={"csrf_token": token, "sets": ["1", "2"]})
    assert response.status_code == 422
    response = logged_in.post(url, data={"csrf_token": token, "sets": ["1", "2"], "agree": "y"})
    assert response.status_code == 303
    session = db.session.scalar(select(AuthorizationSession))
    assert session.requested_set_ids == [1, 2] and session.biz_appid == account.appid


# --- revoke, delete -----------------------------------------------------------------------------


def test_revoke_page_polls_until_purged(logged_in, admin):
    account = make_account(admin.merchant, account_type="mini_program", set_ids=[17, 18])
    url = f"/merchant/accounts/{account.id}/revoke"
    page = html(logged_in.get(url))
    assert "第三方设置" in page and "公众平台安全助手" in page and 'hx-trigger="every 2s"' in page
    fragment = logged_in.get(url, headers={**HX, "HX-Target": "revoke_status"})
    assert fragment.status_code == 200 and html(fragment).lstrip().startswith("<section")
    purge.purge_authorizer(account.appid, reason="unauthorized")
    fragment = logged_in.get(url, headers={**HX, "HX-Target": "revoke_status"})
    assert fragment.status_code == 286 and "Access withdrawn." in html(fragment)
    assert "Access withdrawn." in html(logged_in.get(url))


def test_delete_confirmation_then_purge(logged_in, admin, monkeypatch):
    account = make_account(admin.merchant)
    account_id, url = account.id, f"/merchant/accounts/{account.id}/delete"
    monkeypatch.setattr(purge, "wechat_still_authorizes", lambda appid: False)
    page = html(logged_in.get(url))
    assert "This cannot be undone" in page and 'id="confirm-delete"' in page
    response = logged_in.post(url, data={"csrf_token": csrf_token(logged_in, url)})
    assert response.status_code == 303 and response.headers["Location"].endswith("/merchant/")
    assert db.session.get(Authorizer, account_id) is None
    assert "The account&#39;s data has been deleted." in html(logged_in.get("/merchant/"))
    assert "Already deleted" in html(logged_in.get(url))


def test_delete_refused_while_wechat_still_authorizes(logged_in, admin, monkeypatch):
    account = make_account(admin.merchant)
    url = f"/merchant/accounts/{account.id}/delete"
    monkeypatch.setattr(purge, "wechat_still_authorizes", lambda appid: True)
    response = logged_in.post(url, data={"csrf_token": csrf_token(logged_in, url)})
    assert response.status_code == 409 and 'id="delete-needs-revoke"' in html(response)
    assert "confirm-delete" not in html(response)
    assert db.session.get(Authorizer, account.id) is not None


def test_page_weight_under_100kb_compressed_without_the_qr(logged_in, admin):
    import gzip
    import re

    session = make_session(admin.merchant, admin)
    page = html(logged_in.get(f"/merchant/sessions/{session.public_id}"))
    total = len(gzip.compress(re.sub(r"<svg.*?</svg>", "", page, flags=re.S).encode()))
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page):
        total += len(gzip.compress(logged_in.get(asset).data))
    assert total < 100 * 1024
    assert not re.search(r'src="(?:https?:)?//', page)  # nothing loaded from other hosts
