"""Permission sets per platform (#16): each platform offers and requires its own sets (empty
lists: the configured PLATFORM_PERMISSION_SETS and REQUIRED_PERMISSION_SETS_*). The wizard,
badges and account pages follow the chosen or the account's platform; administrators set them
in the console (audited) and `flask platform add --offers --requires`."""

import re

import pytest
from sqlalchemy import event, func, select

from app.extensions import db
from app.models import AuditEntry, StaffRole
from app.models.platform import Platform
from app.services.authorization import authorizers
from app.services.platform import platforms
from tests import factories
from tests.conftest import AuthActions, csrf_token
from tests.merchant.conftest import make_account
from tests.staff.conftest import post

B = "wx5b7c9d1e3f5a7b9c"
SECRET = "platformbsecret0123456789"
TOKEN = "platformbtoken"
AES = "bcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH"
BOX = re.compile(r'<input type="checkbox" id="set-\d+" name="sets" value="(\d+)"( checked)?>')


def add_b(offered=(1, 2, 15), required=(1,)) -> Platform:
    platforms.default_row()
    row = platforms.add(
        component_appid=B, appsecret=SECRET, token=TOKEN, encoding_aes_key=AES,
        name="Mini Program studio", offered_set_ids=offered, required_set_ids=required,
    )  # fmt: skip
    db.session.commit()
    return row


def fresh(appid: str = B) -> Platform:
    db.session.expire_all()
    return platforms.get(appid)


def sets_audit(appid: str = B) -> list[AuditEntry]:
    query = select(AuditEntry).where(
        AuditEntry.action == "platform.sets_set", AuditEntry.target_id == appid
    )
    return list(db.session.scalars(query))


def signed_in(app, role: StaffRole, lang: str = "en"):
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = lang
    AuthActions(client).login(factories.make_staff(staff_role=role).email)
    return client


@pytest.fixture
def merchant_client(app):
    """A merchant administrator, signed in (English)."""
    user = factories.make_merchant_admin()
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    AuthActions(client).login(user.email)
    client.user = user
    return client


def boxes(page: str) -> tuple[list[int], list[int]]:
    """The wizard's offered sets, in page order, and the ticked ones."""
    found = BOX.findall(page)
    return [int(v) for v, _ in found], [int(v) for v, checked in found if checked]


# --- the service ---


def test_a_platforms_own_lists_else_the_configured_ones(app):
    add_b()
    assert platforms.offered_set_ids(B) == [1, 2, 15]
    assert platforms.required_set_ids("official_account", B) == [1]
    # Its own list, restricted to the account type's sets: set 1 is an Official Account's.
    assert platforms.required_set_ids("mini_program", B) == []
    default = platforms.default_appid()
    assert platforms.offered_set_ids(default) == [1, 2, 3, 4, 7, 11, 15, 17, 18, 19, 30]
    assert platforms.required_set_ids("official_account", default) == [1, 2, 3]
    assert platforms.required_set_ids("mini_program", default) == [17, 18]
    # Without an appid: the current platform's.
    assert platforms.required_set_ids("official_account") == [1, 2, 3]
    with platforms.using(B):
        assert platforms.offered_set_ids() == [1, 2, 15]
        assert authorizers.required_set_ids("official_account") == [1]


def test_required_sets_are_always_among_the_offered(app):
    app.config["PLATFORM_PERMISSION_SETS"] = ["1", "2", "17"]
    add_b(offered=(), required=())
    # B takes both defaults; set 3 is required by default but no longer offered.
    assert platforms.offered_set_ids(B) == [1, 2, 17]
    assert platforms.required_set_ids("official_account", B) == [1, 2]


def test_the_lists_are_read_from_the_cache_not_a_query_per_call(app):
    add_b()
    platforms.offered_set_ids(B)  # loads the registry
    statements = []

    def count(*_args):
        statements.append(1)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        for _ in range(200):
            platforms.offered_set_ids(B)
            platforms.required_set_ids("official_account", B)
            platforms.required_set_ids("official_account", platforms.default_appid())
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert statements == []


@pytest.mark.parametrize(
    ("offered", "required", "unknown", "not_offered"),
    [
        ((1, 2), (3,), [], [3]),
        ((1, 9999), (), ["9999"], []),
        ((1, "abc"), (1,), ["abc"], []),
        ((), (5,), [], [5]),  # with no own offer, required ones come from the configured offer
    ],
)
def test_bad_sets_are_refused_naming_them(app, offered, required, unknown, not_offered):
    with pytest.raises(platforms.InvalidPermissionSets) as caught:
        platforms.clean_permission_sets(offered, required)
    assert (caught.value.unknown, caught.value.not_offered) == (unknown, not_offered)


# --- the merchant's wizard and pages ---


def test_the_wizard_on_b_offers_only_its_sets_and_ticks_its_required_one(merchant_client):
    add_b()
    url = "/merchant/connect/permissions?type=official_account&platform="
    page = merchant_client.get(url + B).text
    offered, ticked = boxes(page)
    assert offered == [1, 2, 15] and ticked == [1]  # the required group first
    assert page.count(">Required</span>") == 1
    # The default platform keeps the configured sets.
    page = merchant_client.get(url + platforms.default_appid()).text
    offered, ticked = boxes(page)
    assert sorted(offered) == [1, 2, 3, 4, 7, 11, 15] and ticked == [1, 2, 3]
    # Consent on B: a set B does not offer is refused; leaving set 1 out is pointed out.
    consent = f"/merchant/connect/consent?type=official_account&platform={B}"
    assert merchant_client.get(consent + "&sets=3").status_code == 422
    left_out = merchant_client.get(consent + "&sets=2")
    assert left_out.status_code == 200 and 'id="required-left-out"' in left_out.text
    assert 'id="required-left-out"' not in merchant_client.get(consent + "&sets=1").text


def test_b_accounts_badge_follows_bs_requirements(app, merchant_client):
    add_b()
    merchant = merchant_client.user.merchant
    on_b = make_account(merchant, set_ids=[2], component_appid=B, nick_name="On B")
    full_on_b = make_account(merchant, set_ids=[1], component_appid=B, nick_name="Full on B")
    on_default = make_account(merchant, set_ids=[1], nick_name="On default")
    assert authorizers.grant_badge(on_b) == "partial"
    assert authorizers.missing_required(on_b.account_type, [2], B) == [1]
    assert authorizers.grant_badge(full_on_b) == "active"
    # The same grant on the default platform follows the configured rule (1, 2 and 3).
    assert authorizers.grant_badge(on_default) == "partial"
    assert authorizers.missing_required(on_default.account_type, [1]) == [2, 3]
    # The merchant's pages and the update flow use the account's platform.
    page = merchant_client.get(f"/merchant/accounts/{on_b.id}/update").text
    offered, ticked = boxes(page)
    assert offered == [1, 2, 15] and ticked == [2]
    staff = signed_in(app, StaffRole.VIEWER)
    listing = staff.get("/staff/accounts/?q=On").text
    rows = {name: listing[listing.index(name) :].split("</tr>")[0]
            for name in ("On B", "Full on B", "On default")}  # fmt: skip
    assert "Partially authorized" in rows["On B"] and "Message management" in rows["On B"]
    assert "Partially authorized" not in rows["Full on B"]
    assert "Partially authorized" in rows["On default"]


# --- the console ---


def sets_form(offered=(), required=()) -> dict:
    return {"offered_set_ids": [str(i) for i in offered],
            "required_set_ids": [str(i) for i in required]}  # fmt: skip


def test_an_admin_sets_a_platforms_sets_audited(app, merchant_client):
    add_b(offered=(), required=())
    admin = signed_in(app, StaffRole.ADMIN)
    page = admin.get(f"/staff/platforms/{B}/edit").text
    assert "Offers the configured default." in page and "PLATFORM_PERMISSION_SETS" in page
    answer = post(admin, f"/staff/platforms/{B}/sets", sets_form((1, 2, 15), (1,)))
    assert answer.status_code == 303 and answer.headers["Location"].endswith(f"/{B}/edit")
    row = fresh()
    assert (row.offered_set_ids, row.required_set_ids) == ([1, 2, 15], [1])
    [entry] = sets_audit()
    assert entry.actor.endswith("@example.com")
    assert entry.details["offered_set_ids"] == [1, 2, 15]
    assert entry.details["required_set_ids"] == [1]
    assert not {SECRET, TOKEN, AES} & set(map(str, entry.details.values()))
    page = admin.get(f"/staff/platforms/{B}/edit").text
    assert "Permission sets of Mini Program studio saved." in page and "Offers 1, 2, 15." in page
    ticked = re.findall(r'<input checked id="offered_set_ids-\d+" name="offered_set_ids" '
                        r'type="checkbox" value="(\d+)">', page)  # fmt: skip
    assert ticked == ["1", "2", "15"]
    # At once in this process: the wizard offers B's sets.
    url = f"/merchant/connect/permissions?type=official_account&platform={B}"
    assert boxes(merchant_client.get(url).text) == ([1, 2, 15], [1])
    # Saving the same again records nothing; clearing both goes back to the defaults.
    post(admin, f"/staff/platforms/{B}/sets", sets_form((1, 2, 15), (1,)))
    assert len(sets_audit()) == 1
    assert post(admin, f"/staff/platforms/{B}/sets", sets_form()).status_code == 303
    assert (fresh().offered_set_ids, fresh().required_set_ids) == ([], [])
    assert platforms.required_set_ids("official_account", B) == [1, 2, 3]


def test_the_page_reads_in_chinese(app):
    add_b()
    admin = signed_in(app, StaffRole.ADMIN, lang="zh-CN")
    page = admin.get(f"/staff/platforms/{B}/edit").text
    assert "提供的权限集" in page and "必需的权限集" in page and "保存权限集" in page


def test_a_viewer_may_not_change_the_sets(app):
    add_b()
    viewer = signed_in(app, StaffRole.VIEWER)
    assert viewer.get(f"/staff/platforms/{B}/edit").status_code == 403
    answer = post(viewer, f"/staff/platforms/{B}/sets", sets_form((1, 2, 3), (3,)))
    assert answer.status_code == 403
    assert (fresh().offered_set_ids, fresh().required_set_ids) == ([1, 2, 15], [1])
    assert sets_audit() == []


def test_the_sets_need_the_csrf_token(app):
    add_b()
    admin = signed_in(app, StaffRole.ADMIN)
    csrf_token(admin, "/staff/health")
    answer = admin.post(f"/staff/platforms/{B}/sets", data=sets_form((1,), (1,)))
    assert answer.status_code in (400, 422)
    assert fresh().offered_set_ids == [1, 2, 15]


@pytest.mark.parametrize(
    ("form", "error"),
    [
        (sets_form((1, 2), (3,)), "A required set must be offered too: 3."),
        (sets_form((), (5,)), "A required set must be offered too: 5."),
        (sets_form((1, 9999), (1,)), "Unknown permission sets: 9999."),
        (sets_form((1, 2), ("x",)), "Unknown permission sets: x."),
    ],
)
def test_bad_sets_are_refused_and_nothing_changes(app, form, error):
    add_b()
    admin = signed_in(app, StaffRole.ADMIN)
    answer = post(admin, f"/staff/platforms/{B}/sets", form)
    assert answer.status_code == 422 and error in answer.text
    assert (fresh().offered_set_ids, fresh().required_set_ids) == ([1, 2, 15], [1])
    assert sets_audit() == []
    assert platforms.offered_set_ids(B) == [1, 2, 15]


def test_the_add_form_takes_the_sets_too(app):
    platforms.default_row()
    db.session.commit()
    admin = signed_in(app, StaffRole.ADMIN)
    assert 'name="required_set_ids"' in admin.get("/staff/platforms/new").text
    form = {"component_appid": B, "name": "Studio", "appsecret": SECRET, "token": TOKEN,
            "encoding_aes_key": AES}  # fmt: skip
    refused = post(admin, "/staff/platforms", {**form, **sets_form((1, 2), (17,))})
    assert refused.status_code == 422 and "A required set must be offered too: 17." in refused.text
    assert platforms.get(B) is None
    answer = post(admin, "/staff/platforms", {**form, **sets_form((1, 2, 15), (1,))})
    assert answer.status_code == 303
    assert (fresh().offered_set_ids, fresh().required_set_ids) == ([1, 2, 15], [1])
    added = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "platform.added"))
    assert added.details["offered_set_ids"] == [1, 2, 15]
    assert added.details["required_set_ids"] == [1]


# --- the CLI ---


def cli_add(runner, *extra):
    return runner.invoke(
        args=["platform", "add", "--appid", B, "--secret", SECRET, "--token", TOKEN,
              "--aes-key", AES, "--name", "Studio", *extra]
    )  # fmt: skip


def platform_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Platform))


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (["--offers", "1,2", "--requires", "3"], "required but not offered: 3"),
        (["--offers", "1,9999"], "unknown permission sets: 9999"),
        (["--offers", "1,two"], "unknown permission sets: two"),
        (["--requires", "5"], "required but not offered: 5"),
    ],
)
def test_the_cli_refuses_bad_sets(app, flags, error):
    before = platform_count()
    result = cli_add(app.test_cli_runner(), *flags)
    assert result.exit_code != 0 and error in result.output
    db.session.expire_all()
    assert platforms.get(B) is None and platform_count() == before


def test_the_cli_takes_the_sets(app):
    result = cli_add(app.test_cli_runner(), "--offers", "1, 2,15", "--requires", "1")
    assert (result.exit_code, result.output.strip()) == (0, B)
    assert (fresh().offered_set_ids, fresh().required_set_ids) == ([1, 2, 15], [1])
    assert platforms.offered_set_ids(B) == [1, 2, 15]
    # Without the flags: the configured defaults.
    other = app.test_cli_runner().invoke(
        args=["platform", "add", "--appid", "wx0000aaaa1111bbbb", "--secret", SECRET,
              "--token", TOKEN, "--aes-key", AES, "--name", "Plain"]
    )  # fmt: skip
    assert other.exit_code == 0
    assert fresh("wx0000aaaa1111bbbb").offered_set_ids == []
