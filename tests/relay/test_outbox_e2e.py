"""End to end through the real message URL: WeChat (wechatpy's crypto) pushes to an account with
an async route whose service (written with wechatpy's plaintext-mode helpers) is down, then up."""

import threading
import time

from sqlalchemy import select
from wechatpy import parse_message
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.utils import check_signature

from app import jobs
from app.extensions import db
from app.models import RelayDelivery
from app.services.relay import routes
from tests.relay.conftest import make_account, text_xml

TOKEN = "asyncServiceToken1"
T0 = int(time.time()) - 60


class AsyncService:
    """Accepts with 200 (the body is ignored) while up, else 503; records what it accepted."""

    def __init__(self):
        self.up = False
        self.lock = threading.Lock()
        self.accepted: list[tuple[int, str]] = []  # (CreateTime, Content) in arrival order
        self.refused = 0

    def __call__(self, seen):
        q = seen["query"]
        try:
            check_signature(TOKEN, q["signature"], q["timestamp"], q["nonce"])
        except InvalidSignatureException:
            return 403, "bad signature"
        message = parse_message(seen["body"])
        with self.lock:
            if not self.up:
                self.refused += 1
                return 503, "down for maintenance"
            self.accepted.append((message.create_time.timestamp(), message.content))
        return 200, "success"


def wait_until(predicate, timeout: float = 5.0) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "timed out"
        time.sleep(0.01)
    return time.monotonic() - started


def test_async_route_target_down_then_up_gets_every_message_once_in_order(
    app, live_portal, wechat, services, merchant, portal_clock
):
    app.config["RELAY_OUTBOX_WAKE"] = True  # as deployed: a stored message wakes the outbox
    behave = AsyncService()
    service = services(behave)
    account = make_account(merchant)
    routes.create_route(name="crm", url=service.url, format="wechat-xml", mode="async",
                        token=TOKEN, merchant_id=merchant.id)  # fmt: skip
    # Pushed out of CreateTime order, each answered `success` at once although the service is down.
    for offset in (2, 0, 1):
        response = wechat.send(account.appid, text_xml(account, f"m{offset}", at=T0 + offset))
        assert response.status_code == 200 and response.text == "success"
        assert response.seconds < 2  # at once (with slack for a loaded machine)

    def head_tried_and_nothing_in_flight():
        db.session.rollback()
        rows = db.session.scalars(select(RelayDelivery).order_by(RelayDelivery.create_time)).all()
        return len(rows) == 3 and rows[0].attempts == 1 and all(not r.lease_until for r in rows)

    # The outbox tried the oldest within moments (no job needed), and answers are written.
    wait_until(head_tried_and_nothing_in_flight)
    assert behave.refused >= 1 and behave.accepted == []

    behave.up = True
    portal_clock.advance(31)  # the first retries come due
    live_portal.call(jobs.run_job, "relay_outbox", force=True)
    wait_until(lambda: len(behave.accepted) == 3)
    assert behave.accepted == [(T0, "m0"), (T0 + 1, "m1"), (T0 + 2, "m2")]

    # Up, a new message is delivered within about a second of its arrival, with no job run.
    response = wechat.send(account.appid, text_xml(account, "m3", at=T0 + 3))
    assert response.text == "success"
    assert wait_until(lambda: len(behave.accepted) == 4, timeout=2.0) < 2.0
    assert behave.accepted[-1] == (T0 + 3, "m3")

    def settled():
        db.session.rollback()
        rows = db.session.scalars(select(RelayDelivery)).all()
        return len(rows) == 4 and all(row.status == "delivered" for row in rows)

    wait_until(settled)
    live_portal.call(jobs.run_job, "relay_outbox", force=True)
    time.sleep(0.2)
    assert len(behave.accepted) == 4  # each once
