"""Reply outcomes are written after WeChat has its answer, in batches: the outcomes that come
while one batch is being written go together in the next transaction."""

import threading

from sqlalchemy import select

from app.extensions import db
from app.models import RelayDelivery
from app.services.relay import inbound
from tests.relay.conftest import make_account
from tests.staff.relay_rows import make_delivery, make_route


def test_outcomes_that_come_while_a_batch_is_written_share_the_next_one(app, monkeypatch):
    account = make_account()
    route = make_route(mode="reply")
    ids = [make_delivery(route, account, status="in_flight").id for _ in range(4)]
    batches, first_written, release = [], threading.Event(), threading.Event()
    settle = inbound._settle

    def held_first(outcomes):
        batches.append([delivery_id for delivery_id, _ in outcomes])
        if len(batches) == 1:
            first_written.set()
            release.wait(10)  # the first batch is still being written...
        settle(outcomes)

    monkeypatch.setattr(inbound, "_settle", held_first)
    settler = inbound._Settler(app)
    settler.add(ids[0], inbound._Result("delivered", reply="<xml/>", duration_ms=3))
    assert first_written.wait(10)
    for delivery_id in ids[1:]:  # ...while these three replies go out
        settler.add(delivery_id, inbound._Result("late", error="timeout", duration_ms=4000))
    release.set()
    for _ in range(200):
        with settler.lock:
            if not settler.draining:
                break
        threading.Event().wait(0.02)
    assert batches == [ids[:1], ids[1:]]
    db.session.rollback()
    rows = dict(db.session.execute(select(RelayDelivery.id, RelayDelivery.status)).all())
    assert rows == {ids[0]: "delivered", ids[1]: "late", ids[2]: "late", ids[3]: "late"}


def test_an_outcome_over_a_delivery_no_longer_in_flight_changes_nothing(app):
    account = make_account()
    route = make_route(mode="reply")
    abandoned = make_delivery(route, account, status="late", last_error="abandoned in flight")
    inbound._settle([(abandoned.id, inbound._Result("delivered", reply="<xml/>"))])
    db.session.expire_all()
    row = db.session.get(RelayDelivery, abandoned.id)
    assert (row.status, row.reply) == ("late", None)
