"""The platforms pages (#16): staff read every platform's state and custody health; administrators
add platforms, record their release and test accounts, replace their keys (write-only) and retire
them; the default platform (WECHAT_*) keeps its keys and status. Roles and CSRF are enforced."""

import pytest
from sqlalchemy import func, select, text

from app.extensions import db
from app.models import AuditEntry, StaffRole
from app.models.platform import Platform
from app.services.platform import health, platforms
from tests import factories
from tests.conftest import AuthActions
from tests.staff.conftest import post

DEFAULT = "wx3a1b5c7d9e0f2468"
B = "wx5b7c9d1e3f5a7b9c"
SECRET = "platformbsecret0123456789"
TOKEN = "platformbtoken"
AES = "bcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH"
NEW_AES = "Zyxwvutsrqponmlkjihgfedcba9876543210ABCDEFG"


def signed_in(app, role: StaffRole, lang: str = "en"):
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = lang
    AuthActions(client).login(factories.make_staff(staff_role=role).email)
    return client


@pytest.fixture
def admin(app):
    return signed_in(app, StaffRole.ADMIN)


@pytest.fixture
def viewer(app):
    return signed_in(app, StaffRole.VIEWER)


def started(app) -> None:
    """What every start does: the WECHAT_* variables write the default platform's row."""
    platforms.sync_default_on_start(app)


def add_b(**overrides) -> Platform:
    """Platform B, beside the default one (whose row the start wrote)."""
    platforms.default_row()
    row = platforms.add(**{
        "component_appid": B, "appsecret": SECRET, "token": TOKEN, "encoding_aes_key": AES,
        "name": "Mini Program studio", "purpose": "小程序代开发", **overrides,
    })  # fmt: skip
    db.session.commit()
    return row


def add_form(**overrides) -> dict:
    return {
        "component_appid": B,
        "name": "Mini Program studio",
        "purpose": "Builds Mini Programs for merchants",
        "appsecret": SECRET,
        "token": TOKEN,
        "encoding_aes_key": AES,
        **overrides,
    }


def edit_form(**overrides) -> dict:
    return {"name": "Mini Program studio", "purpose": "", "release_state": "testing",
            "test_accounts": "", **overrides}  # fmt: skip


def platform_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Platform))


def audit_of(appid: str) -> list[AuditEntry]:
    query = select(AuditEntry).where(AuditEntry.target_type == "platform",
                                     AuditEntry.target_id == appid)  # fmt: skip
    return list(db.session.scalars(query.order_by(AuditEntry.id)))


def fresh(appid: str) -> Platform:
    db.session.expire_all()
    return platforms.get(appid)


def test_every_staff_member_sees_every_platform_default_first(viewer):
    add_b()
    with platforms.using(B):
        health.raise_alert(health.TICKET_SILENT)
    html = viewer.get("/staff/platforms").text
    assert 'href="/staff/platforms" aria-current="page"' in html
    assert html.index(DEFAULT) < html.index(B)
    assert "default (WECHAT_* variables)" in html and html.count("default (WECHAT_*") == 1
    assert "Mini Program studio" in html and "小程序代开发" in html
    assert "In service" in html and "Testing" in html and "No ticket yet" in html
    # Administrators' doors are not shown to a viewer.
    assert "/staff/platforms/new" not in html and f"/staff/platforms/{B}/edit" not in html
    assert "Only administrators add and change platforms." in html


def test_a_viewer_is_refused_every_change(viewer):
    add_b()
    before = platform_count()
    for url in ("/staff/platforms/new", f"/staff/platforms/{B}/edit",
                f"/staff/platforms/{B}/retire"):  # fmt: skip
        assert viewer.get(url).status_code == 403, url
    attempts = {
        "/staff/platforms": add_form(component_appid="wx0000aaaa1111bbbb"),
        f"/staff/platforms/{B}/edit": edit_form(name="Hijacked", release_state="released"),
        f"/staff/platforms/{B}/keys": {"appsecret": "stolen-secret"},
        f"/staff/platforms/{B}/retire": {},
        f"/staff/platforms/{B}/reactivate": {},
    }
    for url, data in attempts.items():
        assert post(viewer, url, data).status_code == 403, url
    row = fresh(B)
    assert platform_count() == before and row.name == "Mini Program studio"
    assert row.active and row.release_state == "testing" and row.appsecret == SECRET
    assert audit_of(B) == []


def test_an_admin_adds_a_platform_whose_keys_never_show_again(admin):
    assert admin.get("/staff/platforms/new").status_code == 200
    answer = post(admin, "/staff/platforms", add_form())
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith(f"/staff/platforms#platform-{B}")
    row = fresh(B)
    assert row.name == "Mini Program studio" and row.active and not row.is_default
    assert (row.appsecret, row.token, row.encoding_aes_key) == (SECRET, TOKEN, AES)
    raw = db.session.execute(
        text("SELECT * FROM platforms WHERE component_appid = :a"), {"a": B}
    ).one()
    stored = " ".join(str(value) for value in raw)
    for secret in (SECRET, TOKEN, AES):
        assert secret not in stored
    pages = admin.get(answer.headers["Location"]).text
    pages += admin.get(f"/staff/platforms/{B}/edit").text
    assert "Platform Mini Program studio added." in pages
    assert f'<a href="/staff/platforms/{B}/edit">Mini Program studio</a>' in pages
    for secret in (SECRET, TOKEN, AES):
        assert secret not in pages
    [entry] = audit_of(B)
    assert entry.action == "platform.added" and entry.actor.endswith("@example.com")
    assert not {SECRET, TOKEN, AES} & set(map(str, entry.details.values()))
    assert platforms.known(B)  # pushes for it are opened at once


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"component_appid": "abc1234567"}, "wx followed by letters and digits"),
        ({"component_appid": "wx12"}, "wx followed by letters and digits"),
        ({"component_appid": "wx1234-5678"}, "wx followed by letters and digits"),
        ({"encoding_aes_key": "abcdefghij"}, "An EncodingAESKey is 43 letters and digits."),
        ({"token": "t!"}, "Use 3 to 32 letters and digits."),
        ({"name": "  ", "appsecret": ""}, "Required."),
        ({"component_appid": DEFAULT}, "A platform with this AppID exists already."),
    ],
)
def test_bad_input_shows_an_error_and_adds_nothing(admin, overrides, error):
    platforms.default_row()
    before = platform_count()
    answer = post(admin, "/staff/platforms", add_form(**overrides))
    assert answer.status_code == 422
    assert error in answer.text
    assert AES not in answer.text and SECRET not in answer.text  # keys are not typed back
    assert platform_count() == before
    assert db.session.scalar(select(func.count()).select_from(AuditEntry)
                             .where(AuditEntry.action == "platform.added")) == 0  # fmt: skip


def test_a_duplicate_appid_is_refused(admin):
    add_b(name="First")
    answer = post(admin, "/staff/platforms", add_form(name="Second"))
    assert answer.status_code == 422
    assert "A platform with this AppID exists already." in answer.text
    assert fresh(B).name == "First" and platform_count() == 2  # B and the default


def test_the_release_is_recorded_with_its_date(admin):
    add_b()
    answer = post(admin, f"/staff/platforms/{B}/edit",
                  edit_form(name="Studio", purpose="Builds Mini Programs",
                            release_state="released"))  # fmt: skip
    assert answer.status_code == 303 and answer.headers["Location"].endswith(f"/{B}/edit")
    row = fresh(B)
    assert row.name == "Studio" and row.purpose == "Builds Mini Programs"
    assert row.release_state == "released" and row.released_at is not None
    released_at = row.released_at
    html = admin.get("/staff/platforms").text
    assert "Released" in html and "last released" in html
    # Saving again as released keeps the date; back to testing keeps the last release's date.
    post(admin, f"/staff/platforms/{B}/edit", edit_form(name="Studio", release_state="released"))
    assert fresh(B).released_at == released_at
    post(admin, f"/staff/platforms/{B}/edit", edit_form(name="Studio", release_state="testing"))
    row = fresh(B)
    assert row.release_state == "testing" and row.released_at == released_at
    actions = [entry.action for entry in audit_of(B)]
    assert actions.count("platform.release_recorded") == 2 and "platform.updated" in actions


def test_test_accounts_are_saved_deduplicated(admin):
    add_b()
    lines = "wxaaaa1111bbbb2222\r\n\r\n  wxcccc3333dddd4444 \nwxaaaa1111bbbb2222\n"
    answer = post(admin, f"/staff/platforms/{B}/edit", edit_form(test_accounts=lines))
    assert answer.status_code == 303
    assert fresh(B).test_accounts == ["wxaaaa1111bbbb2222", "wxcccc3333dddd4444"]
    html = admin.get(f"/staff/platforms/{B}/edit").text
    assert "wxaaaa1111bbbb2222\nwxcccc3333dddd4444</textarea>" in html
    assert '<td class="num">2</td>' in admin.get("/staff/platforms").text
    [entry] = [e for e in audit_of(B) if e.action == "platform.test_accounts_set"]
    assert entry.details["test_accounts"] == ["wxaaaa1111bbbb2222", "wxcccc3333dddd4444"]


def test_invalid_test_accounts_are_refused_and_nothing_changes(admin):
    add_b()
    lines = "wxaaaa1111bbbb2222\ngh_1234567890ab\nwx 12"
    data = edit_form(name="Renamed", release_state="released", test_accounts=lines)
    answer = post(admin, f"/staff/platforms/{B}/edit", data)
    assert answer.status_code == 422
    assert "Not an appid: gh_1234567890ab, wx 12." in answer.text
    row = fresh(B)
    assert row.name == "Mini Program studio" and row.release_state == "testing"
    assert row.test_accounts == [] and audit_of(B) == []


def test_keys_are_replaced_blank_keeps_and_never_shown(admin):
    add_b()
    html = admin.get(f"/staff/platforms/{B}/edit").text
    for name in ("appsecret", "token", "encoding_aes_key"):
        assert f'name="{name}" type="password" value=""' in html
    for secret in (SECRET, TOKEN, AES):
        assert secret not in html
    answer = post(admin, f"/staff/platforms/{B}/keys",
                  {"appsecret": "", "token": "", "encoding_aes_key": NEW_AES})  # fmt: skip
    assert answer.status_code == 303
    row = fresh(B)
    assert (row.appsecret, row.token, row.encoding_aes_key) == (SECRET, TOKEN, NEW_AES)
    assert row.previous_encoding_aes_key == AES  # pushes already on their way still open
    assert platforms.keys(B).encoding_aes_key == NEW_AES  # this process's cache was dropped
    page = admin.get(answer.headers["Location"]).text
    assert "Keys replaced" in page and NEW_AES not in page and AES not in page
    [entry] = audit_of(B)
    assert entry.action == "platform.keys_replaced"
    assert entry.details == {"replaced": ["encoding_aes_key"]}


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"encoding_aes_key": "abcdefghij"}, "An EncodingAESKey is 43 letters and digits."),
        ({"appsecret": "", "token": "", "encoding_aes_key": ""}, "Enter at least one new key"),
    ],
)
def test_bad_keys_change_nothing(admin, data, error):
    add_b()
    answer = post(admin, f"/staff/platforms/{B}/keys", data)
    assert answer.status_code == 422 and error in answer.text
    row = fresh(B)
    assert (row.appsecret, row.token, row.encoding_aes_key) == (SECRET, TOKEN, AES)
    assert audit_of(B) == []


def test_retire_then_reactivate(admin):
    add_b()
    confirm = admin.get(f"/staff/platforms/{B}/retire")
    assert confirm.status_code == 200 and "Retire platform Mini Program studio?" in confirm.text
    answer = post(admin, f"/staff/platforms/{B}/retire")
    assert answer.status_code == 303
    assert fresh(B).status == "retired" and not platforms.known(B)
    page = admin.get(answer.headers["Location"]).text
    assert "Platform Mini Program studio retired." in page and "Put back in service" in page
    assert "Retired" in admin.get("/staff/platforms").text
    assert post(admin, f"/staff/platforms/{B}/reactivate").status_code == 303
    assert fresh(B).status == "active" and platforms.known(B)
    assert [e.action for e in audit_of(B)] == ["platform.retired", "platform.reactivated"]


def test_the_default_platform_keeps_its_keys_and_status(admin, app):
    started(app)
    html = admin.get(f"/staff/platforms/{DEFAULT}/edit").text
    assert "default (WECHAT_* variables)" in html
    assert 'type="password"' not in html and f"/staff/platforms/{DEFAULT}/keys" not in html
    assert f"/staff/platforms/{DEFAULT}/retire" not in html
    assert "come from the WECHAT_* variables" in html
    assert app.config["WECHAT_COMPONENT_APPSECRET"] not in html
    answer = post(admin, f"/staff/platforms/{DEFAULT}/retire")
    assert answer.status_code == 303
    assert "The default platform cannot be retired" in admin.get(answer.headers["Location"]).text
    assert admin.get(f"/staff/platforms/{DEFAULT}/retire").status_code == 303
    answer = post(admin, f"/staff/platforms/{DEFAULT}/keys", {"appsecret": "a-new-secret"})
    assert answer.status_code == 303
    row = fresh(DEFAULT)
    assert row.active and row.appsecret == app.config["WECHAT_COMPONENT_APPSECRET"]
    # What staff record about it is theirs to edit.
    answer = post(admin, f"/staff/platforms/{DEFAULT}/edit",
                  edit_form(name="Official Account services", release_state="released",
                            test_accounts="wxaaaa1111bbbb2222"))  # fmt: skip
    assert answer.status_code == 303
    row = fresh(DEFAULT)
    assert row.name == "Official Account services" and row.release_state == "released"
    assert row.test_accounts == ["wxaaaa1111bbbb2222"] and row.is_default
    assert [e.action for e in audit_of(DEFAULT)] == [
        "platform.updated", "platform.release_recorded", "platform.test_accounts_set",
    ]  # fmt: skip


def test_an_unknown_platform_is_not_found(admin):
    assert admin.get("/staff/platforms/wx0000000000000000/edit").status_code == 404
    assert post(admin, "/staff/platforms/wx0000000000000000/retire").status_code == 404


def test_changes_need_the_csrf_token(admin):
    add_b()
    refused = {
        "/staff/platforms": add_form(component_appid="wx0000aaaa1111bbbb"),
        f"/staff/platforms/{B}/edit": edit_form(name="No token"),
        f"/staff/platforms/{B}/keys": {"encoding_aes_key": NEW_AES},
        f"/staff/platforms/{B}/retire": {},
    }
    for url, data in refused.items():
        assert admin.post(url, data=data).status_code == 400, url
    row = fresh(B)
    assert platform_count() == 2 and row.name == "Mini Program studio" and row.active
    assert row.encoding_aes_key == AES


def test_the_pages_in_chinese(app):
    add_b()
    client = signed_in(app, StaffRole.ADMIN, lang="zh-CN")
    html = client.get("/staff/platforms").text
    for words in ("第三方平台", "默认", "测试中", "添加平台"):
        assert words in html, words
    html = client.get(f"/staff/platforms/{B}/edit").text
    for words in ("测试账号", "全网发布", "替换密钥", "停用平台"):
        assert words in html, words


def test_the_health_page_names_each_alerts_platform_only_when_there_are_several(staff_client):
    health.raise_alert(health.TICKET_SILENT)
    html = staff_client.get("/staff/health").text
    assert "data-platform" not in html and 'id="platforms-health"' not in html
    add_b()
    with platforms.using(B):
        health.raise_alert(health.TICKET_SILENT)
    db.session.commit()
    html = staff_client.get("/staff/health").text
    assert f'data-platform="{B}">Mini Program studio<' in html
    assert f'data-platform="{DEFAULT}">' in html
    assert 'id="platforms-health"' in html and "No ticket yet" in html
