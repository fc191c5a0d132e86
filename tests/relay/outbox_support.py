"""What the outbox tests share: rows as the inbound side stores them, and a recording receiver.

`store_message` inserts a RelayMessage and one pending async RelayDelivery per route, exactly as
app/services/relay/inbound.py does for async routes (then it calls outbox.wake()).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from app.extensions import db
from app.models import Authorizer, RelayDelivery, RelayMessage, RelayRoute
from app.services import clock
from app.wechat.events import build_message_xml
from tests import factories

_seq = itertools.count(1)


def make_account(merchant=None) -> Authorizer:
    merchant = merchant or factories.make_merchant()
    n = next(_seq)
    account = Authorizer(appid=f"wxrelayacct{n:07d}", merchant_id=merchant.id, user_name=f"gh_{n}")
    db.session.add(account)
    db.session.commit()
    return account


def make_route(url: str, *, format: str = "json", paused: bool = False, **overrides) -> RelayRoute:
    route = RelayRoute(
        name=f"route {next(_seq)}",
        url=url,
        format=format,
        mode="async",
        token="route-token" if format == "wechat-xml" else None,
        secret="route-secret" if format == "json" else None,
        msg_types=[],
        paused=paused,
        **overrides,
    )
    db.session.add(route)
    db.session.commit()
    return route


def message_xml(account: Authorizer, create_time: int, content: str, openid: str = "o_user1"):
    n = next(_seq)
    return build_message_xml(
        account.user_name, openid, create_time, "text", Content=content, MsgId=str(10**12 + n)
    )


def store_message(
    account: Authorizer, routes: list[RelayRoute], *, create_time: int, content: str = "hello"
) -> RelayMessage:
    """One message and its pending async deliveries, committed (as the inbound side does)."""
    xml = message_xml(account, create_time, content)
    message = RelayMessage(
        authorizer_id=account.id,
        dedupe_key=hashlib.sha256(xml.encode()).hexdigest(),
        msg_type="text",
        create_time=create_time,
        received_at=clock.now(),
        payload=xml,
    )
    db.session.add(message)
    db.session.flush()
    for route in routes:
        db.session.add(
            RelayDelivery(
                message_id=message.id,
                route_id=route.id,
                authorizer_id=account.id,
                mode="async",
                create_time=create_time,
                status="pending",
                next_attempt_at=clock.now(),
                created_at=clock.now(),
            )
        )
    db.session.commit()
    return message


class Receiver:
    """A business service's async endpoint: records what it accepted, in arrival order.

    `up` false answers 503; `fail` (a callable taking the path and the message id) can refuse
    single requests. `max_in_progress` is the most requests ever in progress for one (path,
    account), i.e. for one route and account when each route has its own path."""

    def __init__(self, *, delay: float = 0.0):
        self.up = True
        self.fail = None
        self.delay = delay
        self.lock = threading.Lock()
        self.requests: list[dict] = []  # every request: path, message id, status answered
        self.accepted: list[tuple[str, int]] = []  # (path, message id) answered 2xx
        self.in_progress: dict[tuple[str, str], int] = {}
        self.max_in_progress = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real service would

            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = receiver._handle(urllib.parse.urlsplit(self.path).path, self.headers, body)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        return Handler

    def _handle(self, path: str, headers, body: bytes) -> int:
        document = json.loads(body)
        message_id, appid = document["id"], document["authorizer_appid"]
        key = (path, appid)
        with self.lock:
            self.in_progress[key] = self.in_progress.get(key, 0) + 1
            self.max_in_progress = max(self.max_in_progress, self.in_progress[key])
        try:
            if self.delay:
                threading.Event().wait(self.delay)
            refused = not self.up or (self.fail is not None and self.fail(path, message_id))
            status = 503 if refused else 200
            with self.lock:
                self.requests.append({"path": path, "id": message_id, "status": status})
                if status == 200:
                    self.accepted.append((path, message_id))
            return status
        finally:
            with self.lock:
                self.in_progress[key] -= 1

    def accepted_ids(self, path: str | None = None) -> list[int]:
        with self.lock:
            return [mid for p, mid in self.accepted if path is None or p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
