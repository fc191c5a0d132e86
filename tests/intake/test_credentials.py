"""Ticket and component-token custody over real HTTP against the sandbox."""

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select

from app import create_app
from app.extensions import db
from app.models import AuditEntry, InboxEvent, VerifyTicket
from app.services.platform import credentials, health
from app.services.platform.credentials import (
    CredentialsUnavailable,
    call_with_component_token,
    component_access_token,
)
from app.services.platform.platforms import wechat_client
from app.wechat.errors import InvalidCredential
from tests.intake.conftest import sealed, ticket_xml

TWO_HOURS = 7200


def _ticket(sandbox) -> str:
    ticket = sandbox.push_ticket()
    sandbox.flush()
    return ticket


def _active(kind: str) -> bool:
    return kind in {alert.kind for alert in health.active_alerts()}


def test_the_ticket_survives_a_restart_of_the_app(sandbox, live_portal, app):
    ticket = _ticket(sandbox)
    restarted = create_app({"ENV_NAME": "test", **_db(app), "WECHAT_API_BASE": sandbox.url})
    with restarted.app_context():
        assert credentials.current_ticket() == ticket
        assert component_access_token()
        db.session.remove()
    assert sandbox.api_calls()["api_component_token"] == 1


def test_a_13_hour_old_ticket_is_not_used(sandbox, live_portal, portal_clock):
    _ticket(sandbox)
    portal_clock.advance(13 * 3600)
    assert live_portal.call(credentials.current_ticket) is None
    with pytest.raises(CredentialsUnavailable):
        live_portal.call(component_access_token)
    assert sandbox.api_calls().get("api_component_token", 0) == 0
    assert live_portal.call(_active, health.NO_VALID_TICKET)


def test_silent_pushes_raise_an_alert_and_restart_pushing_once(sandbox, live_portal, portal_clock):
    _ticket(sandbox)
    assert live_portal.call(credentials.ticket_watchdog) == "ok"
    portal_clock.advance(21 * 60)
    # start_push_ticket makes the sandbox push a ticket at once; hold that push until flush so
    # the alert is observed before the fresh ticket resolves it.
    sandbox.set_faults(pushes={"out_of_order": True})
    assert "start_push_ticket called" in live_portal.call(credentials.ticket_watchdog)
    assert live_portal.call(_active, health.TICKET_SILENT)
    assert "recently" in live_portal.call(credentials.ticket_watchdog)  # rate-limited
    assert sandbox.api_calls()["api_start_push_ticket"] == 1
    sandbox.flush()
    assert not live_portal.call(_active, health.TICKET_SILENT)
    sandbox.set_faults(clear=True)
    _ticket(sandbox)
    assert not live_portal.call(_active, health.TICKET_SILENT)
    actions = live_portal.call(lambda: db.session.scalars(select(AuditEntry.action)).all())
    assert {"alert.raised", "ticket.start_push_requested", "alert.resolved"} <= set(actions)


def test_concurrent_ticket_pushes_keep_the_newest_and_lose_none(live_portal):
    base = int(time.time())
    pushes = live_portal.call(
        lambda: [
            sealed(ticket_xml(f"ticket@@@{n}", create_time=base + n), nonce=str(n))
            for n in range(24)
        ]
    )

    def send(push):
        body, query = push
        return requests.post(f"{live_portal.url}/wechat/events?{query}", data=body, timeout=30)

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(send, reversed(pushes)))  # newest first: older ones arrive late
    assert [reply.text for reply in replies] == ["success"] * 24

    def outcome():
        rows = db.session.execute(select(InboxEvent.outcome, func.count()).group_by("outcome"))
        ticket = db.session.scalar(select(VerifyTicket))
        return dict(rows.all()), ticket.pushes, credentials.current_ticket()

    assert live_portal.call(outcome) == ({"processed": 24}, 24, "ticket@@@23")


def test_eight_threads_at_expiry_cause_exactly_one_refresh(sandbox, live_portal, portal_clock):
    _ticket(sandbox)
    first = live_portal.call(component_access_token)
    portal_clock.advance(TWO_HOURS + 1)
    barrier, tokens = threading.Barrier(8), []

    def ask():
        barrier.wait()
        tokens.append(live_portal.call(component_access_token))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(tokens) == 8 and len(set(tokens)) == 1 and tokens[0] != first
    assert sandbox.api_calls()["api_component_token"] == 2


def test_refresh_happens_ahead_of_expiry_by_one_caller(sandbox, live_portal, portal_clock):
    _ticket(sandbox)
    first = live_portal.call(component_access_token)
    portal_clock.advance(TWO_HOURS - 300)  # inside the 10-minute refresh window
    assert live_portal.call(credentials.refresh_component_token_job) == "ok"
    assert live_portal.call(component_access_token) != first
    assert sandbox.api_calls()["api_component_token"] == 2


def test_a_foreign_refresh_is_detected_alerted_and_recovered_once(sandbox, live_portal):
    _ticket(sandbox)
    live_portal.call(component_access_token)
    sandbox.set_faults(foreign_refresh=True)  # another environment used our AppSecret

    def preauth():
        client = wechat_client()
        return call_with_component_token(client.create_preauthcode).pre_auth_code

    assert live_portal.call(preauth).startswith("preauthcode@@@")
    assert live_portal.call(_active, health.FOREIGN_REFRESH)
    assert sandbox.api_calls()["api_component_token"] == 2


def test_compare_and_swap_never_discards_a_fresh_token(sandbox, live_portal):
    _ticket(sandbox)
    stale = live_portal.call(component_access_token)
    assert live_portal.call(credentials.invalidate_component_token, stale) is not None
    fresh = live_portal.call(component_access_token)
    assert fresh != stale
    # A late failure report about the old token must not touch the new one.
    assert live_portal.call(credentials.invalidate_component_token, stale) is None
    assert live_portal.call(component_access_token) == fresh
    used = []

    def fails_with_stale_then_works(token):
        used.append(token)
        if len(used) == 1:
            raise InvalidCredential(42001, "access_token expired", token=stale)
        return token

    assert live_portal.call(call_with_component_token, fails_with_stale_then_works) == fresh
    assert sandbox.api_calls()["api_component_token"] == 2
    assert not live_portal.call(_active, health.FOREIGN_REFRESH)


def test_ticket_rejection_and_quota_raise_their_own_alerts(sandbox, live_portal, portal_clock):
    _ticket(sandbox)
    sandbox.set_faults(endpoints={"api_component_token": {"errcode": 61006, "times": 1}})
    with pytest.raises(CredentialsUnavailable):
        live_portal.call(component_access_token)
    assert live_portal.call(_active, health.TICKET_REJECTED)
    sandbox.set_faults(clear=True, endpoints={"api_component_token": {"errcode": 45009}})
    with pytest.raises(CredentialsUnavailable):
        live_portal.call(component_access_token)
    assert live_portal.call(_active, health.QUOTA_EXCEEDED)


def _db(app) -> dict:
    return {"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"]}


def _process_worker(url, api_base, start, results):
    app = create_app(
        {"ENV_NAME": "test", "SQLALCHEMY_DATABASE_URI": url, "WECHAT_API_BASE": api_base}
    )
    with app.app_context():
        start.wait(30)
        results.put(component_access_token())


@pytest.mark.skipif(
    not (os.environ.get("TEST_DATABASE_URL") or "").startswith("postgresql"),
    reason="processes share a database only on PostgreSQL here",
)
def test_four_processes_at_expiry_cause_exactly_one_refresh(sandbox, live_portal, app):
    import multiprocessing

    _ticket(sandbox)
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    procs = [
        ctx.Process(target=_process_worker, args=(str(url), sandbox.url, start, results))
        for _ in range(4)
    ]
    for proc in procs:
        proc.start()
    start.set()
    tokens = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(30)
    assert len(set(tokens)) == 1
    assert sandbox.api_calls()["api_component_token"] == 1
