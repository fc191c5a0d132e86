"""Relayed messages are kept RELAY_RETENTION_HOURS and go with their account, from every table."""

import os
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Text, func, inspect, select, text, type_coerce
from sqlalchemy.engine import make_url

from app import jobs
from app.extensions import db
from app.models import Authorizer, RelayDelivery, RelayMessage
from app.services import clock
from app.services.relay import outbox, retention
from tests.grants.conftest import Flow
from tests.relay.outbox_support import Receiver, make_account, make_route, store_message

T0 = 1_700_000_000


@pytest.fixture
def service():
    receiver = Receiver()
    yield receiver
    receiver.close()


def count(model, **where) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(model).filter_by(**where))


def age(message: RelayMessage, hours: float) -> None:
    message.received_at = clock.now() - timedelta(hours=hours)
    db.session.commit()


def test_retention_deletes_messages_past_the_limit_with_their_deliveries(app, service):
    route = make_route(service.url + "/hook")
    account = make_account()
    old = [store_message(account, [route], create_time=T0 + i) for i in range(5)]
    recent = store_message(account, [route], create_time=T0 + 10)
    for message in old:
        age(message, 72.5)
    age(recent, 71.5)
    assert retention.delete_expired(batch=2) == 5  # in batches of 2
    assert count(RelayMessage) == 1 and count(RelayDelivery) == 1
    assert db.session.scalar(select(RelayMessage.id)) == recent.id
    assert retention.delete_expired() == 0
    app.config["RELAY_RETENTION_HOURS"] = 1
    assert jobs.run_job("relay_retention", force=True) == "1"  # the registered job
    assert count(RelayMessage) == 0 and count(RelayDelivery) == 0


def test_a_pending_head_past_retention_does_not_strand_its_group(app, service, portal_clock):
    route = make_route(service.url + "/hook")
    account = make_account()
    head = store_message(account, [route], create_time=T0)
    after = [store_message(account, [route], create_time=T0 + i) for i in (1, 2)]
    service.up = False
    outbox.deliver_due()  # the head backs off, the others are parked behind it
    assert count(RelayDelivery, next_attempt_at=outbox.PARKED) == 2
    age(head, 80)
    assert retention.delete_expired() == 1
    service.up = True
    assert outbox.deliver_due() == 2
    assert service.accepted_ids() == [m.id for m in after]


def test_purge_account_deletes_only_that_accounts_messages(app, service):
    route = make_route(service.url + "/hook")
    gone, kept = make_account(), make_account()
    for i in range(3):
        store_message(gone, [route], create_time=T0 + i)
        store_message(kept, [route], create_time=T0 + i)
    assert retention.purge_account(gone.id) == 3
    db.session.commit()
    assert count(RelayMessage, authorizer_id=gone.id) == 0
    assert count(RelayDelivery, authorizer_id=gone.id) == 0
    assert count(RelayMessage, authorizer_id=kept.id) == 3
    assert count(RelayDelivery, authorizer_id=kept.id) == 3


def database_dump(app) -> tuple[str, str]:
    """Everything the database holds, as text: its logical dump (pg_dump, else every column of
    every table; SQLite's own dump), and for SQLite also the raw bytes of its files."""
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "sqlite":
        connection = db.engine.raw_connection()
        try:
            dumped = "\n".join(connection.driver_connection.iterdump())
        finally:
            connection.close()
        files = [Path(url.database), Path(url.database + "-wal")]
        raw = b"".join(path.read_bytes() for path in files if path.exists())
        return dumped, raw.decode("utf-8", "replace")
    if shutil.which("pg_dump"):
        env = {**os.environ, "PGPASSWORD": url.password or ""}
        command = ["pg_dump", "--data-only", "-h", url.host or "127.0.0.1"]
        command += ["-p", str(url.port or 5432), "-U", url.username, url.database]
        dumped = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        return dumped.stdout, ""
    parts = []
    for table in inspect(db.engine).get_table_names():
        for row in db.session.execute(text(f'SELECT * FROM "{table}"')):
            parts.append(repr(tuple(row)))
    db.session.rollback()
    return "\n".join(parts), ""


def test_a_revoked_account_leaves_no_message_in_a_database_dump(app, sandbox, live_portal, service):
    sandbox.push_ticket()
    sandbox.flush()
    flow = Flow(live_portal, sandbox)
    account = sandbox.account(scenario="fresh", type="official_account")
    session = flow.start((1, 2))
    flow.follow(flow.consent(flow.link(session), account, [1, 2])["redirect_url"])
    sandbox.flush()
    revoked = db.session.scalar(select(Authorizer).where(Authorizer.appid == account["appid"]))
    other = make_account()
    route = make_route(service.url + "/hook")
    secret_words = "revoked-user-secret-词语"
    store_message(revoked, [route], create_time=T0, content=secret_words + " delivered")
    outbox.deliver_due()
    service.up = False
    for i in (1, 2):
        store_message(revoked, [route], create_time=T0 + i, content=f"{secret_words} {i}")
    store_message(other, [route], create_time=T0, content="other account keeps this")
    outbox.deliver_due()  # one pending head backing off, one parked, one delivered
    revoked_id = revoked.id
    stored = type_coerce(RelayMessage.payload, Text)  # the ciphertext, not decrypted
    ciphertexts = db.session.scalars(
        select(stored).where(RelayMessage.authorizer_id == revoked_id)
    ).all()
    assert len(ciphertexts) == 3
    before, raw_before = database_dump(app)
    assert all(token in before for token in ciphertexts)  # the dump sees the rows
    assert secret_words not in before + raw_before  # stored encrypted

    sandbox.revoke(account["appid"])  # WeChat pushes `unauthorized`; the account is purged
    sandbox.flush()

    assert count(Authorizer, id=revoked_id) == 0
    assert count(RelayMessage, authorizer_id=revoked_id) == 0
    assert count(RelayDelivery, authorizer_id=revoked_id) == 0
    assert count(RelayMessage, authorizer_id=other.id) == 1
    after, raw_after = database_dump(app)
    assert secret_words not in after + raw_after
    assert not any(token in after for token in ciphertexts)
