"""The async outbox over real HTTP: order per (route, account), backoff, dead letters, replay."""

import hashlib
import hmac
import json
import socket
import threading
import time

import pytest
import urllib3
import wechatpy
from sqlalchemy import select
from wechatpy.utils import check_signature

from app import metrics
from app.extensions import db
from app.models import AuditEntry, RelayDelivery
from app.services.relay import outbox
from tests.relay.outbox_support import Receiver, make_account, make_route, store_message

T0 = 1_700_000_000  # a CreateTime


@pytest.fixture
def service():
    receiver = Receiver()
    yield receiver
    receiver.close()


def deliveries(**where) -> list[RelayDelivery]:
    db.session.expire_all()
    query = select(RelayDelivery).order_by(RelayDelivery.create_time, RelayDelivery.message_id)
    return list(db.session.scalars(query.filter_by(**where)))


def test_target_down_then_up_delivers_in_create_time_order_once(app, service, portal_clock):
    route = make_route(service.url + "/hook")
    account = make_account()
    # Stored out of CreateTime order (WeChat's pushes overtake each other).
    order = [3, 1, 4, 0, 2]
    messages = {i: store_message(account, [route], create_time=T0 + i) for i in order}
    service.up = False
    assert outbox.deliver_due() == 0
    # Only the head (the oldest CreateTime) was tried; the others wait behind it.
    assert [r["id"] for r in service.requests] == [messages[0].id]
    head, *rest = deliveries()
    assert (head.status, head.attempts, head.last_status_code) == ("pending", 1, 503)
    assert 25 <= (head.next_attempt_at - portal_clock.now()).total_seconds() <= 30
    assert all(d.attempts == 0 and d.next_attempt_at == outbox.PARKED for d in rest)
    assert outbox.deliver_due() == 0  # backing off: nothing sent
    assert len(service.requests) == 1

    service.up = True
    portal_clock.advance(31)
    assert outbox.deliver_due() == 5
    assert service.accepted_ids() == [messages[i].id for i in range(5)]
    assert {d.status for d in deliveries()} == {"delivered"}
    assert outbox.deliver_due() == 0
    assert len(service.accepted) == 5  # each once


def test_a_refused_connection_is_recorded_as_one_not_as_a_timeout(app, portal_clock):
    """urllib3's NewConnectionError subclasses its TimeoutError: the console must still say
    that nothing listens, not that the service was slow."""
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    route = make_route(f"http://127.0.0.1:{port}/hook")
    store_message(make_account(), [route], create_time=T0)
    assert outbox.deliver_due() == 0
    (delivery,) = deliveries()
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert (delivery.last_status_code, delivery.last_error) == (None, "connection error")


class _RawService:
    """Answers every request with the bytes `answer(n)` (n: the request's number), then closes."""

    def __init__(self, answer):
        self.answer, self.count = answer, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += connection.recv(65536)
                head, _, body = request.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(body) < length:
                    body += connection.recv(65536)
                self.count += 1
                connection.sendall(self.answer(self.count))


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nok",  # cut off
        b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100_000,  # too long
    ],
    ids=["cut-off", "too-long"],
)
def test_an_answer_whose_status_line_came_is_the_answer(app, portal_clock, answer):
    """A 200 whose body is cut off or too long to read still delivers (the status line is the
    answer); its connection is dropped, never reused half-read by the next delivery."""
    service = _RawService(lambda n: answer)
    try:
        route = make_route(service.url + "/hook")
        account = make_account()
        for i in range(3):
            store_message(account, [route], create_time=T0 + i)
        assert outbox.deliver_due() == 3
        assert {(d.status, d.last_status_code) for d in deliveries()} == {("delivered", 200)}
        assert service.count == 3
    finally:
        service.listener.close()


def test_backoff_doubles_then_dead_after_eight_attempts_and_the_group_goes_on(
    app, service, portal_clock
):
    route = make_route(service.url + "/hook")
    account = make_account()
    first = store_message(account, [route], create_time=T0)
    second = store_message(account, [route], create_time=T0 + 1)
    refused = first.id
    service.fail = lambda path, message_id: message_id == refused  # this one is refused, always
    started = portal_clock.now()
    waits = []
    for attempt in range(1, 9):
        delivered = outbox.deliver_due()
        (head,) = deliveries(message_id=first.id)
        assert head.attempts == attempt
        if attempt == 8:
            break
        assert delivered == 0 and head.status == "pending"
        wait = (head.next_attempt_at - portal_clock.now()).total_seconds()
        waits.append(wait)
        portal_clock.advance(wait - 5)
        assert outbox.deliver_due() == 0  # not due yet: nothing sent
        assert len(service.requests) == attempt
        portal_clock.advance(5.01)
    expected = [30, 60, 120, 240, 480, 960, 1800]  # (the test's own steps take a moment)
    assert all(e - 4 < wait <= e for wait, e in zip(waits, expected, strict=True)), waits
    # The eighth attempt, about an hour after the first, was the last.
    assert 3600 <= (portal_clock.now() - started).total_seconds() <= 3700
    assert head.status == "dead"
    assert [r["id"] for r in service.requests[:8]] == [first.id] * 8  # none jumped ahead
    # Dead, the head no longer holds its group back: the same drain went on with the next.
    assert delivered == 1
    assert service.accepted_ids() == [second.id]
    assert outbox.deliver_due() == 0


def test_replay_puts_a_dead_delivery_back_in_line_audited_without_content(
    app, service, portal_clock, staff
):
    app.config["RELAY_MAX_ATTEMPTS"] = 1
    route = make_route(service.url + "/hook")
    account = make_account()
    service.up = False
    message = store_message(account, [route], create_time=T0, content="私密内容 private words")
    outbox.deliver_due()
    (dead,) = deliveries()
    assert dead.status == "dead"
    service.up = True
    outbox.replay(dead, actor=staff)
    (again,) = deliveries()
    assert (again.status, again.attempts) == ("pending", 0)
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action.like("relay.%")))
    assert entry.action == "relay.delivery_replayed" and entry.actor_user_id == staff.id
    assert "private" not in str(entry.details) and "私密" not in str(entry.details)
    assert outbox.deliver_due() == 1
    assert service.accepted_ids() == [message.id]
    with pytest.raises(outbox.NotDead):
        outbox.replay(deliveries()[0], actor=staff)


def test_replay_dead_of_one_route(app, service):
    app.config["RELAY_MAX_ATTEMPTS"] = 1
    down = make_route(service.url + "/down")
    other = make_route(service.url + "/other")
    account = make_account()
    service.up = False
    for i in range(3):
        store_message(account, [down, other], create_time=T0 + i)
    for _ in range(3):
        outbox.deliver_due()  # each group's heads die one after the other
    assert {d.status for d in deliveries()} == {"dead"}
    service.up = True
    assert outbox.replay_dead(route_id=down.id) == 3
    assert {d.status for d in deliveries(route_id=other.id)} == {"dead"}
    assert outbox.deliver_due() == 3
    assert outbox.replay_dead() == 3
    assert outbox.deliver_due() == 3
    assert [p for p, _ in service.accepted] == ["/down"] * 3 + ["/other"] * 3


def test_a_paused_route_holds_its_deliveries(app, service, portal_clock):
    held = make_route(service.url + "/held", paused=True)
    live = make_route(service.url + "/live")
    account = make_account()
    store_message(account, [held, live], create_time=T0)
    store_message(account, [held, live], create_time=T0 + 1)
    assert outbox.deliver_due() == 2
    assert all(path == "/live" for path, _ in service.accepted)
    portal_clock.advance(7200)
    assert outbox.deliver_due() == 0
    assert [(d.status, d.attempts) for d in deliveries(route_id=held.id)] == [("pending", 0)] * 2
    held.paused = False
    db.session.commit()
    assert outbox.deliver_due() == 2
    assert len(service.accepted_ids("/held")) == 2


def test_groups_progress_independently(app, service, portal_clock):
    down = make_route(service.url + "/down")
    up = make_route(service.url + "/up")
    first, second = make_account(), make_account()
    service.fail = lambda path, message_id: message_id in blocked
    blocked = set()
    for i in range(4):
        blocked.add(store_message(first, [down], create_time=T0 + i).id)
        store_message(first, [up], create_time=T0 + i)
        store_message(second, [down], create_time=T0 + i)
    assert outbox.deliver_due() == 8  # all but the first account's /down group
    assert len(service.accepted_ids("/up")) == 4
    assert len(service.accepted_ids("/down")) == 4
    stuck = deliveries(route_id=down.id, authorizer_id=first.id)
    assert [d.attempts for d in stuck] == [1, 0, 0, 0]


def test_deleting_a_route_deletes_its_deliveries(app, service):
    route = make_route(service.url + "/gone")
    kept = make_route(service.url + "/kept")
    account = make_account()
    store_message(account, [route, kept], create_time=T0)
    db.session.delete(route)
    db.session.commit()
    assert [d.route_id for d in deliveries()] == [kept.id]


def test_an_older_message_arriving_while_the_head_is_in_flight_waits(app, service):
    route = make_route(service.url + "/hook")
    account = make_account()
    newer = store_message(account, [route], create_time=T0 + 10)
    (in_flight,), _ = outbox._turn([], 10)  # a drain elsewhere is sending it right now
    older = store_message(account, [route], create_time=T0)
    assert outbox._turn([], 10) == ([], 0)  # one in flight per group, even for an older one
    outcome = outbox._send(in_flight.request, 5, urllib3.PoolManager())
    assert outbox._turn([(in_flight, outcome)], 0) == ([], 1)
    assert outbox.deliver_due() == 1
    assert service.accepted_ids() == [newer.id, older.id]


def test_wechat_xml_route_gets_plaintext_xml_a_wechat_sdk_accepts(app, receiver):
    route = make_route(receiver.url + "/wx", format="wechat-xml")
    account = make_account()
    message = store_message(account, [route], create_time=T0, content="你好 hello")
    assert outbox.deliver_due() == 1
    (request,) = receiver.requests
    query = request.query
    check_signature("route-token", query["signature"], query["timestamp"], query["nonce"])
    parsed = wechatpy.parse_message(request.body)
    assert (parsed.type, parsed.content, parsed.source) == ("text", "你好 hello", "o_user1")
    assert query["openid"] == "o_user1"
    assert request.body.decode() == message.payload  # the stored plaintext, as WeChat sent it


def test_json_body_carries_the_message_id_and_is_signed(app, receiver):
    route = make_route(receiver.url + "/json")
    account = make_account()
    message = store_message(account, [route], create_time=T0, content="hi")
    assert outbox.deliver_due() == 1
    (request,) = receiver.requests
    document = json.loads(request.body)
    assert document["id"] == message.id
    assert document["authorizer_appid"] == account.appid
    assert document["message"]["Content"] == "hi"
    headers = {k.lower(): v for k, v in request.headers.items()}
    delivery = deliveries()[0]
    assert headers["x-grantdesk-event"] == "relay.message"
    assert headers["x-grantdesk-delivery"] == str(delivery.id)
    signed = headers["x-grantdesk-timestamp"].encode() + b"." + request.body
    expected = hmac.new(b"route-secret", signed, hashlib.sha256).hexdigest()
    assert headers["x-grantdesk-signature"] == "sha256=" + expected


def test_wake_delivers_within_a_second_without_the_job(app, service):
    app.config["RELAY_OUTBOX_WAKE"] = True
    route = make_route(service.url + "/hook")
    account = make_account()
    message = store_message(account, [route], create_time=T0)
    started = time.monotonic()
    outbox.wake()
    while not service.accepted_ids() and time.monotonic() - started < 5:
        time.sleep(0.01)
    assert service.accepted_ids() == [message.id]
    assert time.monotonic() - started < 2  # within about a second (some slack for a loaded machine)
    db.session.expire_all()
    deadline = time.monotonic() + 5
    while deliveries()[0].status != "delivered" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert deliveries()[0].status == "delivered"


def test_wake_is_a_no_op_when_turned_off_or_outside_an_app():
    outbox.wake()  # no app context: nothing happens, nothing raises


def test_metrics_count_outcomes_and_the_pending_gauge(app, service, portal_clock):
    route = make_route(service.url + "/hook")
    account = make_account()
    counter = metrics.RELAY_DELIVERIES

    def count(status):
        return counter.labels(mode="async", status=status)._value.get()

    before = {status: count(status) for status in ("delivered", "retry")}
    service.up = False
    store_message(account, [route], create_time=T0)
    store_message(account, [route], create_time=T0 + 1)
    outbox.deliver_due()
    gauges = {family.name: family for family in metrics.database_gauges()}
    assert gauges["grantdesk_relay_outbox_pending"].samples[0].value == 2
    service.up = True
    portal_clock.advance(31)
    outbox.deliver_due()
    assert count("retry") - before["retry"] == 1
    assert count("delivered") - before["delivered"] == 2
    gauges = {family.name: family for family in metrics.database_gauges()}
    assert gauges["grantdesk_relay_outbox_pending"].samples[0].value == 0
