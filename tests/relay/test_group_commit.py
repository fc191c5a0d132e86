"""Group commit on the message URL: concurrent requests share one transaction, and nothing is
lost, doubled or misrouted whatever the interleaving (seeded, over real HTTP)."""

import dataclasses
import random
import threading
from collections import Counter

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import RelayDelivery, RelayMessage
from app.models.grants import GrantStatus
from app.services.relay import inbound, routes
from tests.relay.conftest import make_account, text_xml

THREADS = 12


@pytest.fixture
def batch_sizes(monkeypatch):
    """The size of every batch written (the real writer, observed)."""
    sizes: list[int] = []
    write_once = inbound._write_once

    def observed(batch):
        sizes.append(len(batch))
        return write_once(batch)

    monkeypatch.setattr(inbound, "_write_once", observed)
    return sizes


@pytest.mark.parametrize("seed", [7, 20261207])
def test_concurrent_messages_and_retries_are_stored_once_each(
    live_portal, wechat, merchant, batch_sizes, seed
):
    rng = random.Random(seed)
    routes.create_route(name="crm", url="http://127.0.0.1:9/hook", format="json", mode="async",
                        secret="s" * 32, merchant_id=merchant.id)  # fmt: skip
    active = [make_account(merchant) for _ in range(4)]
    revoked = make_account(merchant, status=GrantStatus.REVOKED)
    # Each message is sent one to three times (WeChat's retries), all shuffled together; plus
    # messages for a revoked account and one addressed to another account (neither stored).
    messages = [(rng.choice(active), str(50_000 + n)) for n in range(40)]
    sends = [
        (account.appid, text_xml(account, "hi", msg_id=msg_id), account.user_name)
        for account, msg_id in messages
        for _ in range(rng.randint(1, 3))
    ]
    sends += [(revoked.appid, text_xml(revoked, "hi"), revoked.user_name) for _ in range(5)]
    sends.append((active[0].appid, text_xml(active[0], to_user="gh_other"), active[0].user_name))
    rng.shuffle(sends)
    answers: list[tuple[int, str]] = []
    lock = threading.Lock()

    def worker(mine):
        for appid, inner, user_name in mine:
            response = wechat.send(appid, inner, to_user_name=user_name)
            with lock:
                answers.append((response.status_code, response.text))

    threads = [threading.Thread(target=worker, args=(sends[i::THREADS],)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert Counter(answers) == Counter({(200, "success"): len(sends)}), seed
    db.session.rollback()
    stored = Counter(db.session.scalars(select(RelayMessage.msg_type)))
    assert stored == Counter({"text": len(messages)}), seed  # each message once, no other
    per_message = db.session.execute(
        select(RelayDelivery.message_id, func.count()).group_by(RelayDelivery.message_id)
    ).all()
    assert len(per_message) == len(messages) and {n for _, n in per_message} == {1}, seed
    assert max(batch_sizes) > 1, f"no batch formed: {batch_sizes}"  # the path under test ran


def test_a_batch_that_breaks_a_constraint_fails_only_the_bad_message(app, merchant, monkeypatch):
    """A route deleted between the lookup and the insert (a foreign-key violation): the batch is
    written again message by message, and only the message bound for that route is lost."""
    good, doomed = make_account(merchant), make_account(merchant)
    routes.create_route(name="crm", url="http://127.0.0.1:9/hook", format="json", mode="async",
                        secret="s" * 32, merchant_id=merchant.id)  # fmt: skip
    find_accounts = inbound._find_accounts

    def with_a_deleted_route(pairs):
        accounts = find_accounts(pairs)
        key = (doomed.component_appid, doomed.appid)
        if key in accounts:
            account = accounts[key]
            gone = dataclasses.replace(account.routes[0], id=999_999)
            accounts[key] = dataclasses.replace(account, routes=(gone,))
        return accounts

    monkeypatch.setattr(inbound, "_find_accounts", with_a_deleted_route)
    batch = [_arrival(good, "1"), _arrival(doomed, "2")]
    inbound._write(batch)
    assert [(item.outcome, item.error) for item in batch] == [("stored", None), ("duplicate", None)]
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(RelayMessage)) == 1
    assert db.session.scalar(select(RelayDelivery.authorizer_id)) == good.id


def _arrival(account, msg_id):
    from app.services import clock
    from app.wechat.events import parse_message

    xml = text_xml(account, "hi", msg_id=msg_id)
    message = parse_message(xml)
    digest = inbound.dedupe_key(account.appid, message, account.component_appid)
    return inbound._Arrival(
        account.appid, message, xml, "text", digest, clock.now(), account.component_appid
    )
