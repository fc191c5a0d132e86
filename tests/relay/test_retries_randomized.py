"""WeChat's retries of one message, interleaved at random with random handler delays: the handler
is called exactly once, and every answer is its reply (or `success` where the budget ran out)."""

import random
import threading
import time

import pytest

from app.services.relay import routes
from tests.relay.conftest import deliveries, make_account, text_xml, wechatpy_text_handler

TOKEN = "retrytoken"
BUDGET = 1.0
COPIES = 8
ROUNDS = 5


@pytest.mark.parametrize("seed", [15, 2026])
def test_interleaved_copies_reach_the_handler_once(live_portal, wechat, services, merchant, seed):
    rng = random.Random(seed)
    live_portal.app.config["RELAY_REPLY_TIMEOUT"] = BUDGET
    delays: dict[str, float] = {}
    calls: dict[str, int] = {}
    lock = threading.Lock()

    def delay_for(message):
        with lock:
            calls[str(message.id)] = calls.get(str(message.id), 0) + 1
        return delays[str(message.id)]

    def answer(message):
        time.sleep(delay_for(message))
        from wechatpy.replies import TextReply

        return 200, TextReply(message=message, content=f"reply to {message.id}").render()

    behave, _ = wechatpy_text_handler(TOKEN, answer=answer)
    service = services(behave)
    account = make_account(merchant)
    routes.create_route(name="reply", url=service.url, format="wechat-xml", mode="reply",
                        token=TOKEN)  # fmt: skip

    for round_ in range(ROUNDS):
        msg_id = str(9000 + round_)
        delays[msg_id] = rng.uniform(0, BUDGET * 1.6)
        inner = text_xml(account, f"round {round_}", msg_id=msg_id)
        starts = sorted(rng.uniform(0, 0.3) for _ in range(COPIES))
        answers = send_copies(wechat, account.appid, inner, starts)

        assert calls[msg_id] == 1, (seed, round_)
        plain = {"success" if a == "success" else wechat.open_reply(a) for a in answers}
        replies = plain - {"success"}
        assert len(replies) <= 1 and all(f"reply to {msg_id}" in r for r in replies)
        delivery = deliveries()[-1]
        if delays[msg_id] < BUDGET - 0.4:
            assert delivery.status == "delivered" and plain == replies, (seed, round_, plain)
        elif delays[msg_id] > BUDGET + 0.4:
            assert delivery.status == "late" and plain == {"success"}, (seed, round_, plain)
        assert (delivery.status == "delivered") == bool(replies)
    assert service.calls() == ROUNDS


def send_copies(wechat, appid: str, inner: str, starts: list[float]) -> list[str]:
    """Send one copy of the message per start offset (seconds), concurrently; the answers."""
    answers: list[str] = [""] * len(starts)
    began = time.perf_counter()

    def send(i):
        time.sleep(max(0.0, began + starts[i] - time.perf_counter()))
        response = wechat.send(appid, inner)
        ok = response.status_code == 200
        answers[i] = response.text if ok else f"HTTP {response.status_code}"

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(starts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers
