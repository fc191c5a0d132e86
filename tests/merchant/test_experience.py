"""Merchant pages say the true thing (issue 14): what to tick, what changed, when deletion can
happen, partial grants, past authorizations, stale states and an idempotent consent."""

import re

from sqlalchemy import func, select

from app.extensions import db
from app.models import AuthorizationSession, GrantChange, SessionStatus
from app.services import clock
from app.services.authorization import purge
from app.services.platform import provider
from tests.conftest import csrf_token
from tests.merchant.conftest import HX, complete, make_account, make_session


def html(response) -> str:
    return response.get_data(as_text=True)


def settle_update(admin, account, requested, granted):
    """An update session completed with the grant change the exchange records."""
    session = make_session(admin.merchant, admin, set_ids=requested, biz_appid=account.appid)
    before = set(account.grant.set_ids)
    account.grant.set_ids = sorted(granted)
    kind = "updated" if before != set(granted) else "confirmed"
    db.session.add(GrantChange(
        grant=account.grant, at=clock.now(), kind=kind,
        set_ids=sorted(granted), added=sorted(set(granted) - before),
        removed=sorted(before - set(granted)), source="redirect", session_id=session.id,
    ))  # fmt: skip
    return complete(session, account, granted)


def test_request_missing_that_granted_nothing_says_nothing_changed(logged_in, admin):
    account = make_account(admin.merchant, set_ids=[1, 2])
    session = settle_update(admin, account, [1, 2, 3], [1, 2])
    page = html(logged_in.get(f"/merchant/sessions/{session.public_id}"))
    assert "<h1>Nothing changed</h1>" in page and 'id="nothing-changed"' in page
    assert "Permissions updated" not in page
    assert "<title>Nothing changed" in page


def test_update_result_reports_removals(logged_in, admin):
    account = make_account(admin.merchant, set_ids=[1, 2, 3])
    session = settle_update(admin, account, [1, 3], [1, 3])
    page = html(logged_in.get(f"/merchant/sessions/{session.public_id}"))
    changed = page[page.index('id="what-changed"') :]
    assert "Removed: User management" in changed and "<h1>Permissions updated</h1>" in page


def test_update_page_says_what_wechat_will_show_for_a_removal(logged_in, admin):
    account = make_account(admin.merchant, set_ids=[1, 2, 3])
    session = make_session(admin.merchant, admin, set_ids=[1, 3], biz_appid=account.appid)
    page = html(logged_in.get(f"/merchant/sessions/{session.public_id}"))
    dropped = page[page.index('id="plan-dropped"') :].split("</p>")[0]
    assert "will not list" in dropped and "User management" in dropped
    assert "untick these" not in page and 'id="plan-tick"' not in page


def test_link_page_names_the_sets_to_tick(client, admin, app):
    account = make_account(admin.merchant, set_ids=[1, 2])
    session = make_session(admin.merchant, admin, set_ids=[1, 2, 3], biz_appid=account.appid)
    from app.services.authorization import consent

    with app.test_request_context():
        plan = consent.wechat_page_plan(session)
    assert plan.to_tick == [3] and plan.kept == [1, 2] and plan.dropped == []


def test_delete_on_an_active_account_explains_first_without_a_button(logged_in, admin, monkeypatch):
    account = make_account(admin.merchant)
    monkeypatch.setattr(purge, "wechat_still_authorizes", lambda appid: True)
    page = html(logged_in.get(f"/merchant/accounts/{account.id}/delete"))
    assert 'id="delete-needs-revoke"' in page and "confirm-delete" not in page
    assert f'href="/merchant/accounts/{account.id}/revoke"' in page


def test_delete_when_wechat_cannot_be_reached_offers_no_button(logged_in, admin):
    account = make_account(admin.merchant)  # no sandbox: WeChat is unreachable
    page = html(logged_in.get(f"/merchant/accounts/{account.id}/delete"))
    assert "could not reach WeChat" in page and "confirm-delete" not in page


def test_original_id_is_labelled_as_such(logged_in, admin):
    account = make_account(admin.merchant)
    page = html(logged_in.get(f"/merchant/accounts/{account.id}"))
    assert re.search(r"<dt>Original ID</dt><dd[^>]*>gh_", page)
    assert "<dt>WeChat ID</dt>" not in page  # no alias: nothing to call a WeChat ID


def test_partial_status_on_account_pages(logged_in, admin):
    account = make_account(admin.merchant, set_ids=[1, 2])
    for url in ("/merchant/", f"/merchant/accounts/{account.id}"):
        page = html(logged_in.get(url))
        assert 'data-status="partial"' in page and "Missing: Account services" in page


def test_past_authorizations_keep_dates_not_profiles(logged_in, admin):
    account = make_account(admin.merchant, account_type="mini_program", set_ids=[17],
                           nick_name="Vanishing Cafe")  # fmt: skip
    purge.purge_authorizer(account.appid, reason="unauthorized")
    page = html(logged_in.get("/merchant/"))
    past = page[page.index('id="past-authorizations"') :]
    assert "Mini Program" in past and "Data deleted on" in past and "revoked in WeChat" in past
    assert "Vanishing Cafe" not in page and account.appid not in page
    assert "No accounts connected yet" in page


def test_account_page_after_revoke_leads_to_the_receipt_not_a_404(logged_in, admin):
    account = make_account(admin.merchant)
    account_id = account.id
    purge.purge_authorizer(account.appid, reason="unauthorized")
    response = logged_in.get(f"/merchant/accounts/{account_id}")
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/merchant/accounts/{account_id}/revoke")
    polled = logged_in.get(f"/merchant/accounts/{account_id}", headers=HX)
    assert polled.headers["HX-Redirect"].endswith("/revoke")


def test_account_page_polls_for_changes_made_in_wechat(logged_in, admin):
    account = make_account(admin.merchant, set_ids=[1, 2, 3])
    url = f"/merchant/accounts/{account.id}"
    assert 'hx-trigger="every 10s"' in html(logged_in.get(url))
    account.grant.set_ids = [1, 2]
    db.session.commit()
    fragment = html(logged_in.get(url, headers={**HX, "HX-Target": "account_body"}))
    assert fragment.lstrip().startswith('<div id="account_body"')
    assert "Partially authorized" in fragment


def test_old_result_page_after_revoke_does_not_say_connected(logged_in, admin):
    account = make_account(admin.merchant)
    session = complete(make_session(admin.merchant, admin), account, [1, 2, 3])
    purge.purge_authorizer(account.appid, reason="unauthorized")
    page = html(logged_in.get(f"/merchant/sessions/{session.public_id}"))
    assert "<h1>No longer connected</h1>" in page and "Account connected" not in page


def test_expired_session_does_not_tick_the_connect_step(logged_in, admin):
    session = make_session(admin.merchant, admin, status=SessionStatus.EXPIRED)
    page = html(logged_in.get(f"/merchant/sessions/{session.public_id}"))
    steps = page[page.index('class="steps"') : page.index("</ol>", page.index('class="steps"'))]
    assert steps.count("step-done") == 3 and 'aria-current="step"' in steps


def test_final_state_swap_retitles_the_tab(logged_in, admin):
    account = make_account(admin.merchant)
    session = complete(make_session(admin.merchant, admin), account, [1, 2, 3])
    fragment = html(logged_in.get(f"/merchant/sessions/{session.public_id}",
                                  headers={**HX, "HX-Target": "status"}))  # fmt: skip
    assert "<title>Account connected · Grantdesk</title>" in fragment


def test_live_page_promises_auto_update_only_with_javascript(logged_in, admin):
    session = make_session(admin.merchant, admin)
    page = html(logged_in.get(f"/merchant/sessions/{session.public_id}"))
    hint = re.search(r"<p[^>]*>This page updates by itself[^<]*</p>", page).group(0)
    assert "data-js-only" in hint and "hidden" in hint
    assert "Reload this page to see the latest status" in page


def consent_form(client, sets=(1, 2, 3)):
    query = "type=official_account&" + "&".join(f"sets={i}" for i in sets)
    page = html(client.get(f"/merchant/connect/consent?{query}"))
    key = re.search(r'name="consent_key" type="hidden" value="([^"]+)"', page).group(1)
    data = {"type": "official_account", "sets": list(sets), "agree": "y",
            "csrf_token": csrf_token(client, "/merchant/"), "consent_key": key}  # fmt: skip
    return page, data


def test_consent_resubmitted_opens_no_second_session(logged_in, admin):
    _page, data = consent_form(logged_in)
    first = logged_in.post("/merchant/connect/consent", data=data)
    again = logged_in.post("/merchant/connect/consent", data=data)  # back + resubmit
    assert first.status_code == again.status_code == 303
    assert first.headers["Location"] == again.headers["Location"]
    assert db.session.scalar(select(func.count(AuthorizationSession.id))) == 1
    _page, other = consent_form(logged_in)  # a fresh form is a new connection
    logged_in.post("/merchant/connect/consent", data=other)
    assert db.session.scalar(select(func.count(AuthorizationSession.id))) == 2


def test_wizard_warns_when_a_required_set_is_left_out(logged_in, app):
    app.config["REQUIRED_PERMISSION_SETS_OFFICIAL_ACCOUNT"] = [1, 2, 3]
    page, _data = consent_form(logged_in, sets=(1, 2))
    warning = page[page.index('id="required-left-out"') :].split("</div>")[0]
    assert "Account services" in warning and "sets=3" in warning
    page, _data = consent_form(logged_in, sets=(1, 2, 3))
    assert 'id="required-left-out"' not in page


def test_sign_in_prompt_is_translated(client):
    client.post("/locale", data={"locale": "zh_CN", "csrf_token": csrf_token(client, "/login")})
    client.get("/merchant/")
    page = html(client.get("/login"))
    assert "请先登录" in page and "Please log in" not in page


def test_provider_is_named_on_merchant_pages_and_the_phone_landing(logged_in, admin, client):
    provider.update_provider("云帆互动", logo_bytes=provider.monogram_png())
    account = make_account(admin.merchant, account_type="mini_program", set_ids=[17, 18])
    page = html(logged_in.get(f"/merchant/accounts/{account.id}/revoke"))
    assert "find 云帆互动" in page and "your service provider" not in page
    assert 'src="/provider/logo' in page
    session = make_session(admin.merchant, admin)
    from app.services.authorization import sessions

    landing = html(client.get(sessions.connect_url(session).replace("http://localhost", "")))
    assert "云帆互动" in landing


def test_dates_use_babel_medium_dates_with_24_hour_times(logged_in, admin, client):
    account = make_account(admin.merchant)
    page = html(logged_in.get(f"/merchant/accounts/{account.id}"))
    assert re.search(r"[A-Z][a-z]{2} \d{1,2}, \d{4}, \d{2}:\d{2}", page)
    assert not re.search(r"\b\d{1,2}/\d{1,2}/\d{2}\b", page)
    token = csrf_token(logged_in, "/settings")
    logged_in.post("/locale", data={"locale": "zh_CN", "csrf_token": token})
    page = html(logged_in.get(f"/merchant/accounts/{account.id}"))
    assert re.search(r"\d{4}年\d{1,2}月\d{1,2}日 \d{2}:\d{2}", page)


def test_one_voice_in_chinese_merchant_text():
    from babel.messages.pofile import read_po

    with open("app/translations/zh_Hans_CN/LC_MESSAGES/messages.po", "rb") as handle:
        catalog = read_po(handle)
    informal = [m.id for m in catalog if isinstance(m.string, str) and "你" in m.string]
    assert informal == []
    assert catalog["Next step"].string == "下一步"


def test_a_set_we_do_not_offer_gets_our_own_message(logged_in):
    page = html(logged_in.get("/merchant/connect/consent?type=official_account&sets=17"))
    assert "Choose only from the permissions listed." in page and "not a valid choice" not in page


def test_staff_purge_is_a_revocation_in_past_authorizations(logged_in, admin):
    """Staff purge only once WeChat confirms the revocation: it was not a deletion request."""
    account = make_account(admin.merchant)
    purge.purge_authorizer(account.appid, reason="staff_purge")
    past = html(logged_in.get("/merchant/"))
    past = past[past.index('id="past-authorizations"') :]
    assert "revoked in WeChat" in past and "deletion you requested" not in past


def test_revoke_page_promises_live_updates_only_with_javascript(logged_in, admin):
    account = make_account(admin.merchant)
    page = html(logged_in.get(f"/merchant/accounts/{account.id}/revoke"))
    live = re.search(r"<span[^>]*>\s*This page shows it live\.</span>", page).group(0)
    assert "data-js-only" in live and "hidden" in live
    assert "js/copy.js" in page  # what shows it when JavaScript runs


BLOCKS = re.compile(r"</?(?:p|li|div|h[1-6]|dt|dd|td|th|tr|section|ol|ul|dl|br|form|nav|header|"
                    r"footer|main|label|button|a class=\"button[^\"]*\")\b[^>]*>")  # fmt: skip


def stray_spaces(page: str) -> list[str]:
    """Chinese punctuation followed or preceded by a space inside one line of text."""
    page = re.sub(r"<(script|style|title|svg)\b.*?</\1>", "\x00", page, flags=re.S)
    found = []
    for block in re.sub(r"<[^>]+>", "", BLOCKS.sub("\x00", page)).split("\x00"):
        line = re.sub(r"\s+", " ", block).strip()
        found += re.findall(r".{0,12}(?:[。：，；？！、] \S| [。：，；？！、]).{0,12}", line)
    return found


def test_chinese_merchant_pages_have_no_space_after_chinese_punctuation(client, auth, admin, app):
    app.config["REQUIRED_PERMISSION_SETS_OFFICIAL_ACCOUNT"] = [1, 2, 3]
    auth.login(admin.email)
    client.post("/locale", data={"locale": "zh_CN", "csrf_token": csrf_token(client, "/login")})
    partial = make_account(admin.merchant, set_ids=[1, 2])
    update = make_session(admin.merchant, admin, set_ids=[1, 3], biz_appid=partial.appid)
    result = complete(make_session(admin.merchant, admin), partial, [1, 2])
    pages = ["/merchant/", f"/merchant/accounts/{partial.id}",
             f"/merchant/sessions/{update.public_id}", f"/merchant/sessions/{result.public_id}",
             f"/merchant/accounts/{partial.id}/revoke"]  # fmt: skip
    found = {url: stray_spaces(html(client.get(url))) for url in pages}
    assert {url: spaces for url, spaces in found.items() if spaces} == {}
