"""A retry reaching another process than the first copy (another gunicorn worker or host): it
waits on the delivery row and answers the same reply; the handler sees one request."""

import multiprocessing
import threading
import time

from app import create_app
from app.services.relay import routes
from tests.relay.conftest import WeChat, make_account, text_xml, wechatpy_text_handler

TOKEN = "otherprocess1"


def _serve(url: str, ports) -> None:
    """Child process: the portal on its own port, same database."""
    from werkzeug.serving import make_server

    app = create_app({"ENV_NAME": "test", "SQLALCHEMY_DATABASE_URI": url})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    ports.put(server.server_port)
    server.serve_forever()


def test_a_retry_in_another_process_gets_the_same_single_reply(
    live_portal, wechat, services, merchant
):
    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    url = live_portal.app.config["SQLALCHEMY_DATABASE_URI"]
    other = ctx.Process(target=_serve, args=(str(url), ports), daemon=True)
    other.start()
    try:
        other_wechat = WeChat(f"http://127.0.0.1:{ports.get(timeout=60)}", live_portal.app.config)
        behave, replies = wechatpy_text_handler(TOKEN, delay=lambda: 0.8)
        service = services(behave)
        account = make_account(merchant)
        routes.create_route(name="reply", url=service.url, format="wechat-xml", mode="reply",
                            token=TOKEN)  # fmt: skip
        inner = text_xml(account, "two processes", msg_id="8001")
        answers = {}

        def first():
            answers["first"] = wechat.send(account.appid, inner).text

        thread = threading.Thread(target=first)
        thread.start()
        deadline = time.monotonic() + 5
        while service.calls() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        answers["retry_elsewhere"] = other_wechat.send(account.appid, inner).text
        thread.join()
        answers["retry_elsewhere_after"] = other_wechat.send(account.appid, inner).text
    finally:
        other.terminate()
        other.join(10)
    assert service.calls() == 1
    assert {name: wechat.open_reply(text) for name, text in answers.items()} == {
        name: replies["8001"] for name in answers
    }
