"""Several drains at once (threads with their own connections, as processes or hosts would be):
one delivery in flight per (route, account), CreateTime order kept, each message accepted once."""

import contextvars
import random
import threading
from collections import defaultdict

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import RelayDelivery, RelayMessage
from app.services.relay import outbox
from tests.relay.outbox_support import Receiver, make_account, make_route, store_message

T0 = 1_700_000_000


def drain_concurrently(app, limits: list[int]) -> list[int]:
    """Run one deliver_due per limit, all at once, each in its own app context and session."""
    results = [0] * len(limits)
    errors = []
    start = threading.Barrier(len(limits))

    def run(index: int, limit: int) -> None:
        with app.app_context():
            try:
                start.wait()
                results[index] = outbox.deliver_due(limit=limit)
            except Exception as exc:  # surfaced below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [
        threading.Thread(target=contextvars.Context().run, args=(run, i, limit))
        for i, limit in enumerate(limits)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


def accepted_in_order(service: Receiver, appid_of: dict[int, str], time_of: dict[int, int]):
    """Per (path, account): the create times of accepted messages, in arrival order."""
    groups = defaultdict(list)
    for path, message_id in list(service.accepted):
        groups[(path, appid_of[message_id])].append(time_of[message_id])
    return groups


def test_two_drains_at_once_never_send_two_of_a_group(app):
    service = Receiver(delay=0.01)
    try:
        routes = [make_route(service.url + f"/r{i}") for i in range(2)]
        accounts = [make_account() for _ in range(3)]
        appid_of, time_of = {}, {}
        for n in random.Random(7).sample(range(12), 12):  # stored out of order
            for account in accounts:
                message = store_message(account, routes, create_time=T0 + n)
                appid_of[message.id], time_of[message.id] = account.appid, T0 + n
        assert sum(drain_concurrently(app, [1000, 1000])) == 72
        assert service.max_in_progress == 1
        groups = accepted_in_order(service, appid_of, time_of)
        assert len(groups) == 6
        assert all(times == [T0 + n for n in range(12)] for times in groups.values())
    finally:
        service.close()


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_randomized_drains_failures_and_arrivals_keep_order_and_deliver_once(
    app, seed, portal_clock
):
    rng = random.Random(seed)
    service = Receiver(delay=0.002)
    tries = defaultdict(int)
    tries_lock = threading.Lock()

    def fail(path: str, message_id: int) -> bool:
        # Deterministic per (route, message, attempt): a delivery's attempts never overlap.
        with tries_lock:
            tries[(path, message_id)] += 1
            n = tries[(path, message_id)]
        return random.Random(f"{seed}:{path}:{message_id}:{n}").random() < 0.35

    service.fail = fail
    try:
        routes = [make_route(service.url + f"/r{i}") for i in range(rng.randint(1, 3))]
        accounts = [make_account() for _ in range(rng.randint(2, 4))]
        appid_of, time_of, newest = {}, {}, {}
        stored = [(account, T0 + t) for account in accounts for t in rng.sample(range(100), 6)]
        rng.shuffle(stored)  # random arrival order, unrelated to CreateTime

        def store(account, create_time):
            chosen = rng.sample(routes, rng.randint(1, len(routes)))
            message = store_message(account, chosen, create_time=create_time)
            appid_of[message.id], time_of[message.id] = account.appid, create_time
            newest[account.id] = max(newest.get(account.id, 0), create_time)

        for account, create_time in stored:
            store(account, create_time)
        for _ in range(60):
            drain_concurrently(app, [rng.randint(1, 12) for _ in range(rng.randint(1, 4))])
            if rng.random() < 0.3:  # a newer message arrives between drains
                account = rng.choice(accounts)
                store(account, newest[account.id] + rng.randint(1, 5))
            open_count = db.session.scalar(
                select(func.count()).where(RelayDelivery.status == "pending")
            )
            if not open_count:
                break
            portal_clock.advance(rng.choice([0, 31, 300, 1800]))
        else:
            pytest.fail("deliveries still open after 60 rounds")

        db.session.expire_all()
        rows = db.session.scalars(select(RelayDelivery)).all()
        delivered = {(r.route_id, r.message_id) for r in rows if r.status == "delivered"}
        path_of = {route.id: f"/r{i}" for i, route in enumerate(routes)}
        accepted = list(service.accepted)
        # Each delivery accepted at most once, and exactly the delivered ones.
        assert len(accepted) == len(set(accepted))
        assert set(accepted) == {(path_of[route], message) for route, message in delivered}
        assert {r.status for r in rows} <= {"delivered", "dead"}
        # One in flight per (route, account), and CreateTime order within each.
        assert service.max_in_progress == 1
        for times in accepted_in_order(service, appid_of, time_of).values():
            assert times == sorted(times)
        # A dead delivery was tried RELAY_MAX_ATTEMPTS times, and never accepted.
        for row in rows:
            if row.status == "dead":
                assert row.attempts == 8 and tries[(path_of[row.route_id], row.message_id)] == 8
        assert db.session.scalar(select(func.count()).select_from(RelayMessage)) == len(time_of)
    finally:
        service.close()
