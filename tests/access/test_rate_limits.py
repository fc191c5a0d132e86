"""Failed sign-ins are limited per account (tightly) and per client address (loosely)."""

import re

import pytest

from app.security import trust_proxies
from tests import factories
from tests.conftest import csrf_token


class Browser:
    """A test client that signs in from one client address (and, behind a proxy, through it)."""

    def __init__(self, app, address, forwarded_for=None):
        self.client = app.test_client()
        self.client.environ_base.update(HTTP_ACCEPT_LANGUAGE="en", REMOTE_ADDR=address)
        if forwarded_for:
            self.client.environ_base["HTTP_X_FORWARDED_FOR"] = forwarded_for
        self.token = csrf_token(self.client)

    def sign_in(self, email, password=factories.PASSWORD):
        data = {"email": email, "password": password, "csrf_token": self.token}
        return self.client.post("/login", data=data)


def test_an_accounts_typos_lock_that_account_only(app, staff):
    colleague = factories.make_staff()
    office = Browser(app, "203.0.113.7")
    statuses = [office.sign_in(staff.email, "typo typo typo").status_code for _ in range(5)]
    assert statuses == [422] * 5
    locked = office.sign_in(staff.email)  # even the right password waits
    assert locked.status_code == 429
    page = locked.get_data(as_text=True)
    assert "You can try again after" in page
    assert int(locked.headers["Retry-After"]) > 0
    # The same address, another account: not affected.
    assert office.sign_in(colleague.email).status_code == 303


def test_a_storm_from_one_address_never_locks_the_account_elsewhere(app, staff):
    attacker, owner = Browser(app, "198.51.100.66"), Browser(app, "203.0.113.10")
    for _ in range(5):
        attacker.sign_in(staff.email, "guess guess guess")
    assert attacker.sign_in(staff.email).status_code == 429  # even with the right password
    assert owner.sign_in(staff.email).status_code == 303


def test_many_addresses_together_reach_the_accounts_total(app, staff):
    app.config["LOGIN_ACCOUNT_TOTAL_RATE_LIMIT"] = "8 per hour"
    for n in range(4):  # each address stays under its own limits
        botnet = Browser(app, f"192.0.2.{n + 1}")
        for _ in range(2):
            assert botnet.sign_in(staff.email, "guess guess guess").status_code == 422
    locked = Browser(app, "192.0.2.99").sign_in(staff.email)
    assert locked.status_code == 429
    assert "You can try again after" in locked.get_data(as_text=True)


def test_the_locked_page_names_the_retry_time_in_chinese_too(app, staff):
    office = Browser(app, "203.0.113.8")
    office.client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "zh-CN"
    for _ in range(5):
        office.sign_in(staff.email, "typo typo typo")
    page = office.sign_in(staff.email).get_data(as_text=True)
    assert re.search("后再试|之后再试|重试", page)


def test_successful_sign_ins_cost_nothing(app, staff):
    browser = Browser(app, "203.0.113.9")
    for _ in range(7):
        assert browser.sign_in(staff.email).status_code == 303
        browser.client.post("/logout", data={"csrf_token": csrf_token(browser.client, "/settings")})
        browser.token = csrf_token(browser.client)


def test_one_addresss_failures_never_lock_out_another_address(app, staff):
    app.config["LOGIN_ADDRESS_RATE_LIMIT"] = "6 per hour"
    noisy, quiet = Browser(app, "198.51.100.1"), Browser(app, "198.51.100.2")
    for n in range(6):  # one failure each on many accounts: no account limit is reached
        assert noisy.sign_in(f"guess{n}@example.com", "wrong password").status_code == 422
    assert noisy.sign_in(staff.email).status_code == 429
    assert quiet.sign_in(staff.email).status_code == 303


@pytest.mark.parametrize("hops", [0, 1])
def test_behind_a_trusted_proxy_the_real_client_is_counted(app, staff, hops):
    app.config["LOGIN_ADDRESS_RATE_LIMIT"] = "3 per hour"
    app.config["GRANTDESK_TRUSTED_PROXIES"] = hops
    trust_proxies(app)
    proxy = "10.0.0.1"
    attacker = Browser(app, proxy, forwarded_for="198.51.100.66")
    colleague = Browser(app, proxy, forwarded_for="198.51.100.77")
    for n in range(3):
        attacker.sign_in(f"guess{n}@example.com", "wrong password")
    assert attacker.sign_in(staff.email).status_code == 429
    # With the proxy trusted, the colleague is another client; without, everyone is the proxy.
    assert colleague.sign_in(staff.email).status_code == (303 if hops else 429)


REDIS_URL = "redis://127.0.0.1:6379/4"


def _redis_available() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.mark.skipif(not _redis_available(), reason="no Redis at " + REDIS_URL)
def test_the_limits_hold_in_redis_shared_by_every_worker(tmp_path):
    """Two app instances (two workers) on one Redis count one account's failures together."""
    import redis

    from app import create_app
    from app.extensions import db, limiter
    from tests.conftest import database_url

    config = {
        "ENV_NAME": "test",
        "SQLALCHEMY_DATABASE_URI": database_url(tmp_path),
        "RATELIMIT_STORAGE_URI": REDIS_URL,
    }
    first, second = create_app(config), create_app(config)
    with first.app_context():
        db.drop_all()
        db.create_all()
        limiter.reset()
        try:
            staff = factories.make_staff()
            email = staff.email
            worker_one, worker_two = Browser(first, "192.0.2.1"), Browser(second, "192.0.2.1")
            for browser in (worker_one, worker_two) * 2 + (worker_one,):
                assert browser.sign_in(email, "typo typo typo").status_code == 422
            assert worker_two.sign_in(email).status_code == 429
            stored = redis.Redis.from_url(REDIS_URL).keys("*login-account*")
            assert stored  # the counts live in Redis, not in a worker's memory
        finally:
            limiter.reset()
            db.session.remove()
            db.drop_all()
            db.engine.dispose()
