"""Authorizer token custody: concurrent sweeps, recovery, rotation, backoff, crashes."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from sqlalchemy import func, select, update

from app.extensions import db
from app.models import AuthorizerToken, Grant, GrantStatus
from app.services import clock
from app.services.custody import sweep
from tests.grants.fleet import sandbox_refresh_tokens, seed_portal, seed_sandbox


@pytest.fixture
def fleet(flow):
    def make(count, **kwargs):
        rows = seed_sandbox(flow.sandbox, count, **kwargs)
        return rows, flow.portal.call(lambda: seed_portal(db.session, rows, flow.merchant.id))

    return make


def _custody():
    db.session.rollback()
    db.session.expire_all()
    return list(db.session.scalars(select(AuthorizerToken)))


@pytest.mark.slow
def test_four_concurrent_sweepers_refresh_each_token_exactly_once(flow, fleet):
    fleet(1000)
    results, barrier = [], threading.Barrier(4)

    def sweeper():
        barrier.wait()
        results.append(flow.portal.call(sweep.sweep_tokens, batch_size=50, concurrency=4))

    threads = [threading.Thread(target=sweeper) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(240)
    assert sum(r.refreshed for r in results) == 1000
    assert sum(sum(r.outcomes.values()) for r in results) == 1000
    assert sum(1 for r in results if r.refreshed) >= 2  # the work really was shared
    assert flow.calls("api_authorizer_token") == 1000
    rows = _custody()
    assert all(r.access_token and r.access_expires_at > clock.now() for r in rows)
    assert all(r.lease_owner is None for r in rows)
    assert flow.portal.call(sweep.sweep_tokens).outcomes == {}  # nothing left due


def test_61023_recovers_the_refresh_token_from_the_authorizer_list(flow, fleet):
    rows, _ = fleet(3)
    appid = rows[0][0]
    flow.sandbox.set_faults(rotate_refresh_token=appid)  # our stored token is now stale
    result = flow.portal.call(sweep.sweep_tokens)
    assert result.outcomes == {"refreshed": 2, "recovered": 1}
    assert flow.calls("api_get_authorizer_list") == 1
    held = {r.authorizer.appid: r.refresh_token for r in _custody()}
    truth = sandbox_refresh_tokens(flow.sandbox)
    assert all(held[a] == truth[a] for a in held)
    assert held[appid] != rows[0][1]


def test_61023_without_a_listed_token_needs_reauthorization(flow, fleet):
    rows, _ = fleet(1, exchanged=False)  # the list shows an empty refresh token
    flow.sandbox.set_faults(rotate_refresh_token=rows[0][0])
    assert flow.portal.call(sweep.sweep_tokens).outcomes == {"needs_reauthorization": 1}
    grant = db.session.scalar(select(Grant))
    assert grant.status is GrantStatus.NEEDS_REAUTHORIZATION
    assert grant.changes[-1].kind == "needs_reauthorization"
    row = _custody()[0]
    assert row.refresh_token == rows[0][1] and row.last_error_code == 61023


def test_rotated_refresh_token_is_persisted(flow, fleet):
    rows, _ = fleet(1)
    from app.sandbox import tokens as sandbox_tokens
    from app.sandbox.models import Authorization
    from app.sandbox.models import db as sandbox_db

    with flow.sandbox.app.app_context():  # WeChat rotates; the old token works 5 more minutes
        grant = sandbox_db.session.execute(select(Authorization)).scalars().all()[-1]
        sandbox_tokens.rotate_refresh_token(grant, "refreshtoken@@@rotated", transition=True)
        sandbox_db.session.commit()
    assert flow.portal.call(sweep.sweep_tokens).outcomes == {"refreshed": 1}
    row = _custody()[0]
    assert row.refresh_token == "refreshtoken@@@rotated" and row.refresh_token_updated_at


def test_a_lease_lost_mid_call_still_keeps_a_rotated_refresh_token(flow, fleet, monkeypatch):
    fleet(1)
    from app.sandbox import tokens as sandbox_tokens
    from app.sandbox.models import Authorization
    from app.sandbox.models import db as sandbox_db

    with flow.sandbox.app.app_context():
        grant = sandbox_db.session.execute(select(Authorization)).scalars().all()[-1]
        sandbox_tokens.rotate_refresh_token(grant, "refreshtoken@@@rotated", transition=True)
        sandbox_db.session.commit()
    real_call = sweep._call_refresh

    def slow_call(*args):
        answer = real_call(*args)
        # The call outlived the lease, and another sweeper took the row meanwhile.
        db.session.execute(update(AuthorizerToken).values(lease_owner="other"))
        db.session.commit()
        return answer

    monkeypatch.setattr(sweep, "_call_refresh", slow_call)
    assert flow.portal.call(sweep.sweep_tokens).outcomes == {"lost_lease": 1}
    row = _custody()[0]
    assert row.refresh_token == "refreshtoken@@@rotated" and row.lease_owner == "other"
    assert row.access_token is None  # the new holder stores its own answer


@pytest.mark.parametrize("errcode", [-1, 45009])
def test_backoff_on_busy_and_quota(flow, fleet, errcode, portal_clock):
    fleet(1)
    flow.sandbox.set_faults(endpoints={"api_authorizer_token": {"errcode": errcode, "times": 9}})
    assert flow.portal.call(sweep.sweep_tokens).outcomes == {"backoff": 1}
    calls = flow.calls("api_authorizer_token")
    row = _custody()[0]
    assert (row.consecutive_failures, row.last_error_code) == (1, errcode)
    assert row.next_attempt_at > clock.now() and row.refresh_token
    assert flow.portal.call(sweep.sweep_tokens).outcomes == {}  # backing off
    assert flow.calls("api_authorizer_token") == calls
    flow.sandbox.set_faults(clear=True)
    portal_clock.advance(31)
    assert flow.portal.call(sweep.sweep_tokens).outcomes == {"refreshed": 1}
    assert _custody()[0].consecutive_failures == 0


def test_crash_between_answer_and_commit_loses_nothing(flow, fleet, monkeypatch, portal_clock):
    rows, _ = fleet(5)
    real_store, crashed, lock = sweep._store, [], threading.Lock()

    def store(row, result):
        with lock:  # the sweep runs rows in parallel threads: exactly one of them crashes
            crash = not crashed
            crashed.append(row.authorizer_id)
        if crash:
            raise RuntimeError("worker died")
        return real_store(row, result)

    monkeypatch.setattr(sweep, "_store", store)
    assert flow.portal.call(sweep.sweep_tokens).outcomes == {"refreshed": 4, "error": 1}
    assert flow.portal.call(sweep.sweep_tokens).outcomes == {}  # its lease still holds
    portal_clock.advance(61)
    assert flow.portal.call(sweep.sweep_tokens).outcomes == {"refreshed": 1}
    held = {r.authorizer.appid: r.refresh_token for r in _custody()}
    assert held == dict(rows)


@pytest.mark.slow
def test_worker_process_killed_mid_sweep_loses_no_refresh_token(app, flow, fleet, portal_clock):
    rows, _ = fleet(200)
    flow.sandbox.set_faults(endpoints={"api_authorizer_token": {"latency": 0.02}})
    script = textwrap.dedent(f"""
        from app import create_app
        from app.services.custody import sweep
        app = create_app({{"ENV_NAME": "test",
                          "SQLALCHEMY_DATABASE_URI": {app.config["SQLALCHEMY_DATABASE_URI"]!r},
                          "WECHAT_API_BASE": {flow.sandbox.url!r}}})
        with app.app_context():
            print("sweeping", flush=True)
            sweep.sweep_tokens(batch_size=20, concurrency=2)
    """)
    worker = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              cwd=os.getcwd(), start_new_session=True)  # fmt: skip
    assert worker.stdout.readline().strip() == b"sweeping"
    deadline = time.monotonic() + 30  # kill it mid-sweep: once some tokens are stored
    while not any(r.access_token for r in _custody()) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(10)
    done = sum(1 for r in _custody() if r.access_token)
    assert 0 < done < 200, done
    flow.sandbox.set_faults(clear=True)
    portal_clock.advance(61)  # the dead worker's leases lapse
    flow.portal.call(sweep.sweep_tokens)
    held = {r.authorizer.appid: r.refresh_token for r in _custody()}
    assert held == dict(rows)
    assert all(r.access_token and r.lease_owner is None for r in _custody())
    assert db.session.scalar(select(func.count()).select_from(AuthorizerToken)) == 200
