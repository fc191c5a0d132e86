"""Staff two-factor sign-in: enrollment, the second step, recovery codes, reuse, enforcement."""

import re

import pyotp
import pytest
from sqlalchemy import text

from app.extensions import db
from app.models import RecoveryCode, TotpCredential, User
from app.services import clock
from app.services.access import mfa
from tests import factories
from tests.conftest import csrf_token

SECRET_ELEMENT = re.compile(r'<code id="totp-secret">([A-Z2-7]+)</code>')
RECOVERY_CODE = re.compile(r"<li><code>([a-z2-9-]{19})</code></li>")


@pytest.fixture(autouse=True)
def real_clock():
    clock.reset()
    yield
    clock.reset()


def _code(secret: str, step_offset: int = 0) -> str:
    return pyotp.TOTP(secret).at(clock.now().timestamp() + 30 * step_offset)


def enroll(client) -> tuple[str, list[str]]:
    """Enroll the signed-in user through the pages; returns the secret and recovery codes."""
    page = client.get("/settings/two-factor")
    assert page.status_code == 200
    secret = SECRET_ELEMENT.search(page.get_data(as_text=True)).group(1)
    token = csrf_token(client, "/settings/two-factor")
    answer = client.post("/settings/two-factor", data={"code": _code(secret), "csrf_token": token})
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    codes = RECOVERY_CODE.findall(answer.get_data(as_text=True))
    return secret, codes


def second_step(client, code: str):
    token = csrf_token(client, "/login/two-factor")
    return client.post("/login/two-factor", data={"code": code, "csrf_token": token})


@pytest.fixture
def enrolled(client, auth, staff):
    """A staff member who enrolled, then signed out: (user, secret, recovery codes)."""
    auth.login(staff.email)
    secret, codes = enroll(client)
    # The enrollment code used this time step; later sign-ins need a later one.
    clock.advance(30)
    auth.logout()
    return staff, secret, codes


def test_enrollment_page_shows_qr_and_secret_and_confirms_with_a_code(client, auth, staff):
    auth.login(staff.email)
    html = client.get("/settings").get_data(as_text=True)
    assert 'href="/settings/two-factor"' in html
    page = client.get("/settings/two-factor").get_data(as_text=True)
    assert "<svg" in page and "<path" in page  # inline QR, no request to another host
    secret = SECRET_ELEMENT.search(page).group(1)
    # Reloading shows the same pending secret (the app was scanned once).
    assert (
        SECRET_ELEMENT.search(client.get("/settings/two-factor").get_data(as_text=True)).group(1)
        == secret
    )
    credential = db.session.scalar(db.select(TotpCredential))
    assert credential.confirmed_at is None and not mfa.is_enrolled(staff)

    token = csrf_token(client, "/settings/two-factor")
    wrong = client.post("/settings/two-factor", data={"code": "000000", "csrf_token": token})
    assert wrong.status_code == 422 and not mfa.is_enrolled(staff)

    secret, codes = enroll(client)
    assert mfa.is_enrolled(staff)
    assert len(codes) == 10 and len(set(codes)) == 10
    # Secret encrypted at rest, recovery codes only hashed.
    raw = db.session.execute(text("SELECT secret FROM totp_credentials")).scalar_one()
    assert secret not in raw
    hashes = db.session.scalars(db.select(RecoveryCode.code_hash)).all()
    assert len(hashes) == 10 and not set(codes) & set(hashes)
    # Enrolled: the page now manages it and no longer shows the secret.
    managed = client.get("/settings/two-factor").get_data(as_text=True)
    assert "totp-secret" not in managed and "Unused recovery codes: 10" in managed


def test_password_alone_does_not_sign_an_enrolled_staff_member_in(client, auth, enrolled):
    staff, secret, _codes = enrolled
    answer = auth.login(staff.email, next="/staff/merchants")
    assert answer.status_code == 303 and answer.headers["Location"] == "/login/two-factor"
    assert client.get("/staff/").status_code == 302  # still anonymous
    assert "/login" in client.get("/staff/").headers["Location"]

    wrong = second_step(client, "123456" if _code(secret) != "123456" else "654321")
    assert wrong.status_code == 422
    assert client.get("/staff/").status_code == 302

    answer = second_step(client, _code(secret))
    assert answer.status_code == 303 and answer.headers["Location"] == "/staff/merchants"
    assert client.get("/staff/").status_code == 200


def test_a_code_is_accepted_once_and_within_one_step_either_side(client, auth, enrolled):
    staff, secret, _codes = enrolled
    code = _code(secret)
    auth.login(staff.email)
    assert second_step(client, code).status_code == 303
    auth.logout()
    auth.login(staff.email)
    assert second_step(client, code).status_code == 422  # replayed within its window
    # The next step's code (clock drift of +30 s) is accepted; after it, the current one is not.
    assert second_step(client, _code(secret, +1)).status_code == 303
    auth.logout()
    auth.login(staff.email)
    assert second_step(client, _code(secret)).status_code == 422


def test_codes_outside_the_window_are_refused(app, enrolled):
    staff, secret, _codes = enrolled
    for offset in (-3, -2, 2, 3):
        with pytest.raises(mfa.InvalidCode):
            mfa.verify_second_factor(staff, _code(secret, offset))
    clock.advance(60)  # past the enrollment code's step
    assert mfa.verify_second_factor(staff, _code(secret, -1)) == "totp"


def test_a_recovery_code_signs_in_once(client, auth, enrolled):
    staff, _secret, codes = enrolled
    auth.login(staff.email)
    assert second_step(client, codes[3].upper()).status_code == 303  # case does not matter
    assert client.get("/staff/").status_code == 200
    auth.logout()
    auth.login(staff.email)
    assert second_step(client, codes[3]).status_code == 422
    assert second_step(client, codes[4].replace("-", "")).status_code == 303
    assert mfa.remaining_recovery_codes(staff) == 8


def test_the_second_step_is_rate_limited(client, auth, enrolled):
    staff, secret, _codes = enrolled
    auth.login(staff.email)
    token = csrf_token(client, "/login/two-factor")
    statuses = [
        client.post("/login/two-factor", data={"code": "99999a", "csrf_token": token}).status_code
        for _ in range(6)
    ]
    assert statuses == [422] * 5 + [429]
    # Even the right code is refused while the limit holds.
    right = client.post("/login/two-factor", data={"code": _code(secret), "csrf_token": token})
    assert right.status_code == 429
    assert client.get("/staff/").status_code == 302


def test_the_second_step_needs_a_fresh_password_step(client, auth, enrolled):
    staff, secret, _codes = enrolled
    assert client.get("/login/two-factor").status_code == 303  # nobody passed the password
    auth.login(staff.email)
    with client.session_transaction() as session:
        session["mfa_pending"] = {
            **session["mfa_pending"],
            "at": session["mfa_pending"]["at"] - 301,
        }
    answer = second_step(client, _code(secret))
    assert answer.status_code == 303 and answer.headers["Location"] == "/login"
    assert client.get("/staff/").status_code == 302


def test_required_mode_sends_unenrolled_staff_to_enrollment_first(app, client, auth, staff):
    app.config["GRANTDESK_STAFF_MFA"] = "required"
    answer = auth.login(staff.email)
    assert answer.status_code == 303  # no second step yet: there is nothing to check
    for path in ("/staff/", "/staff/accounts/", "/staff/merchants", "/staff/api-keys"):
        answer = client.get(path)
        assert answer.status_code == 302 and answer.headers["Location"] == "/settings/two-factor"
    # The first sign-in lands on enrollment ("/" -> console -> enrollment).
    assert client.get("/", follow_redirects=True).request.path == "/settings/two-factor"
    enroll(client)
    assert client.get("/staff/").status_code == 200


def test_optional_mode_lets_unenrolled_staff_in(app, client, auth, staff):
    assert app.config["GRANTDESK_STAFF_MFA"] == "optional"
    auth.login(staff.email)
    assert client.get("/staff/").status_code == 200


def test_turning_off_and_re_enrolling_need_a_current_code(client, auth, enrolled):
    staff, secret, _codes = enrolled
    auth.login(staff.email)
    second_step(client, _code(secret))
    clock.advance(30)
    token = csrf_token(client, "/settings/two-factor")
    refused = client.post(
        "/settings/two-factor/disable", data={"code": "", "csrf_token": token, "then": "off"}
    )
    assert refused.status_code == 422 and mfa.is_enrolled(staff)
    answer = client.post(
        "/settings/two-factor/disable",
        data={"code": _code(secret), "csrf_token": token, "then": "reenroll"},
    )
    assert answer.status_code == 303 and answer.headers["Location"] == "/settings/two-factor"
    assert not mfa.is_enrolled(staff)
    assert db.session.scalar(db.select(db.func.count(RecoveryCode.id))) == 0
    new_secret, _ = enroll(client)
    assert new_secret != secret and mfa.is_enrolled(staff)


def test_merchant_users_have_no_two_factor_pages(client, auth, merchant_admin):
    auth.login(merchant_admin.email)
    assert client.get("/settings/two-factor").status_code == 403
    assert "/settings/two-factor" not in client.get("/settings").get_data(as_text=True)


def test_secret_is_stored_encrypted_and_rotates_with_the_keys(app, staff):
    credential = mfa.start_enrollment(staff)
    raw = db.session.execute(text("SELECT secret FROM totp_credentials")).scalar_one()
    assert credential.secret not in raw and raw.startswith("gAAAA")


def test_create_staff_prints_role_and_enrollment_instructions(app, runner):
    app.config["GRANTDESK_STAFF_MFA"] = "required"
    result = runner.invoke(
        args=["create-staff", "--email", "boss@example.com", "--role", "operator",
              "--password", "a long password", "--name", "Boss"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "boss@example.com (operator)" in result.output
    assert "/settings/two-factor" in result.output and "first sign-in" in result.output
    user = factories.accounts.find_user_by_email("boss@example.com")
    assert user.staff_role.value == "operator"
    default = runner.invoke(
        args=["create-staff", "--email", "root@example.com", "--password", "a long password"]
    )
    assert default.exit_code == 0 and "(admin)" in default.output
    bad = runner.invoke(
        args=["create-staff", "--email", "x@example.com", "--role", "owner", "--password", "pw"]
    )
    assert bad.exit_code != 0


def test_racing_requests_with_one_code_let_exactly_one_in(app, enrolled):
    """Seeded: several threads submit the same valid code at once, in a shuffled order, each with
    its own session; the guarded update lets exactly one through whatever the interleaving."""
    import contextvars
    import random
    import threading

    staff, secret, _codes = enrolled
    code = _code(secret)
    order = list(range(4))
    random.Random(1212).shuffle(order)
    results, barrier = {}, threading.Barrier(len(order), timeout=20)

    def attempt(n: int):
        with app.app_context():
            try:
                user = db.session.get(User, staff_id)
                db.session.commit()  # hold no snapshot or lock while waiting for the others
                barrier.wait()
                results[n] = mfa.verify_second_factor(user, code)
            except mfa.InvalidCode:
                results[n] = "refused"
            except Exception as error:  # reported below instead of hanging the barrier
                barrier.abort()
                results[n] = repr(error)
            finally:
                db.session.remove()

    staff_id = staff.id  # read here: touching the test's objects in threads would share its session
    db.session.commit()
    # Each in a context of its own (as the live portal's requests): its own app context and
    # DB session, never the test's.
    threads = [threading.Thread(target=contextvars.Context().run, args=(attempt, n)) for n in order]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results.values()) == ["refused"] * (len(order) - 1) + ["totp"], results
