"""The relay's test world: WeChat played with wechatpy's crypto, business services written
with wechatpy's plaintext-mode helpers (real local HTTP servers), accounts with active grants."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import xmltodict
from flask import current_app
from sqlalchemy import func, select
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature

from app.extensions import db
from app.models import Authorizer, Grant, RelayDelivery, RelayMessage
from app.models.grants import GrantStatus
from app.services import clock
from app.services.relay import inbound
from app.wechat._xml import build_xml
from tests import factories

_seq = itertools.count(1)


def make_account(
    merchant=None,
    *,
    status=GrantStatus.ACTIVE,
    user_name: str | None = "auto",
    component_appid: str | None = None,
    appid: str | None = None,
):
    """An authorizer (with its original id gh_...) and a grant; committed. `component_appid`:
    the platform it is held on (default: the current one); `appid`: e.g. an account already
    held on another platform."""
    n = next(_seq)
    appid = appid or f"wxrelay{n:010d}"
    authorizer = Authorizer(
        appid=appid,
        **({"component_appid": component_appid} if component_appid else {}),
        merchant_id=merchant.id if merchant else None,
        account_type="official_account",
        nick_name=f"中继测试 Relay {n}",
        user_name=f"gh_relay{n:08d}" if user_name == "auto" else user_name,
        created_at=clock.now(),
    )
    grant = Grant(authorizer=authorizer, status=status, set_ids=[1], authorized_at=clock.now(),
                  updated_at=clock.now())  # fmt: skip
    db.session.add_all([authorizer, grant])
    db.session.commit()
    return authorizer


def text_xml(
    account, content="你好 hello", *, openid="o_user_0001", msg_id=None, at=None, to_user=None
) -> str:
    """A user's text message to the account, as WeChat writes it."""
    fields = {
        "ToUserName": to_user or account.user_name or "gh_unknown",
        "FromUserName": openid,
        "CreateTime": at or int(time.time()),
        "MsgType": "text",
        "Content": content,
        "MsgId": msg_id or str(secrets.randbelow(10**18)),
    }
    return build_xml(fields)


def event_xml(account, event="subscribe", *, openid="o_user_0001", at=None, **extra) -> str:
    fields = {
        "ToUserName": account.user_name or "gh_unknown",
        "FromUserName": openid,
        "CreateTime": at or int(time.time()),
        "MsgType": "event",
        "Event": event,
        **extra,
    }
    return build_xml(fields)


class WeChat:
    """Plays WeChat: seals a message with wechatpy's WeChatCrypto (the platform's token, key and
    appid), POSTs it to the message URL and opens the encrypted passive reply. With
    `component_appid` (and its token and key) it plays another platform, posting to
    /wechat/<component_appid>/messages/<appid>."""

    def __init__(self, base_url: str, config, *, component_appid=None, token=None, aes_key=None):
        self.base_url = base_url
        self.component_appid = component_appid or config["WECHAT_COMPONENT_APPID"]
        self.prefix = f"/wechat/{component_appid}" if component_appid else "/wechat"
        self.crypto = WeChatCrypto(
            token or config["WECHAT_TOKEN"], aes_key or config["WECHAT_ENCODING_AES_KEY"],
            self.component_appid,
        )  # fmt: skip
        self.http = requests.Session()

    def seal(self, inner_xml: str, to_user_name: str, *, sdk_envelope=False) -> tuple[str, dict]:
        """WeChat's envelope (<ToUserName>, <Encrypt>), or with `sdk_envelope` the one the SDK
        builds (<Encrypt>, <MsgSignature>, <TimeStamp>, <Nonce>), as a harness might send it."""
        nonce = str(secrets.randbelow(10**9))
        envelope = self.crypto.encrypt_message(inner_xml, nonce)
        sealed = xmltodict.parse(envelope)["xml"]
        body = envelope if sdk_envelope else (
            f"<xml><ToUserName><![CDATA[{to_user_name}]]></ToUserName>"
            f"<Encrypt><![CDATA[{sealed['Encrypt']}]]></Encrypt></xml>"
        )  # fmt: skip
        params = {"signature": "x", "timestamp": sealed["TimeStamp"], "nonce": nonce,
                  "openid": "o_user_0001", "encrypt_type": "aes",
                  "msg_signature": sealed["MsgSignature"]}  # fmt: skip
        return body, params

    def send(
        self, appid: str, inner_xml: str, *, to_user_name=None, params=None, body=None,
        sdk_envelope=False,
    ):  # fmt: skip
        """POST like WeChat (5 s timeout); returns the response with `.seconds` set."""
        to_user_name = to_user_name or xmltodict.parse(inner_xml)["xml"]["ToUserName"]
        sealed_body, sealed_params = self.seal(inner_xml, to_user_name, sdk_envelope=sdk_envelope)
        started = time.perf_counter()
        response = self.http.post(
            f"{self.base_url}{self.prefix}/messages/{appid}",
            params=params or sealed_params,
            data=(body if body is not None else sealed_body).encode(),
            headers={"Content-Type": "text/xml"},
            timeout=5,
        )
        response.seconds = time.perf_counter() - started
        return response

    def open_reply(self, text: str) -> str:
        """Verify and decrypt our passive reply as an SDK would; returns the plaintext XML."""
        outer = xmltodict.parse(text)["xml"]
        return self.crypto.decrypt_message(
            text, outer["MsgSignature"], outer["TimeStamp"], outer["Nonce"]
        )


class Service:
    """A business service behind a route, on a real port. `behave(kind, request)` returns
    (status, body) and may sleep; every request is recorded in `seen`."""

    def __init__(self, behave: Callable):
        self.behave = behave
        self.seen: list[dict] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/wechat"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handler(self):
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once, no 40 ms stall

            def do_POST(self):  # noqa: N802 - http.server's naming
                split = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                seen = {"query": dict(urllib.parse.parse_qsl(split.query)),
                        "headers": dict(self.headers), "body": self.rfile.read(length),
                        "at": time.perf_counter()}  # fmt: skip
                with service.lock:
                    service.seen.append(seen)
                status, text = service.behave(seen)
                data = text.encode("utf-8") if isinstance(text, str) else text
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the relay gave up on a late answer
                    pass

            def log_message(self, *args):
                pass

        return Handler

    def calls(self) -> int:
        with self.lock:
            return len(self.seen)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wechatpy_text_handler(token: str, *, delay: Callable[[], float] = lambda: 0.0,
                          answer: Callable | None = None):  # fmt: skip
    """A wechat-xml handler as a wechatpy user writes it: check_signature, parse_message, a
    TextReply rendered. Returns (behave, replies) where replies maps MsgId to the XML sent."""
    replies: dict[str, str] = {}

    def behave(seen):
        q = seen["query"]
        try:
            check_signature(token, q["signature"], q["timestamp"], q["nonce"])
        except InvalidSignatureException:
            return 403, "bad signature"
        message = parse_message(seen["body"])
        time.sleep(delay())
        if answer is not None:
            return answer(message)
        xml = TextReply(message=message, content=f"收到 got: {message.content}").render()
        replies[str(message.id)] = xml
        return 200, xml

    return behave, replies


def json_signature_ok(secret: str, seen) -> bool:
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    mac = hmac.new(secret.encode(), f"{headers['x-grantdesk-timestamp']}.".encode() + seen["body"],
                   hashlib.sha256).hexdigest()  # fmt: skip
    return hmac.compare_digest(headers["x-grantdesk-signature"], f"sha256={mac}")


def json_body(seen) -> dict:
    return json.loads(seen["body"])


@pytest.fixture
def services():
    """Make Service(behave) instances; all closed after the test."""
    made: list[Service] = []

    def make(behave) -> Service:
        service = Service(behave)
        made.append(service)
        return service

    yield make
    for service in made:
        service.close()


@pytest.fixture
def wechat(live_portal):
    return WeChat(live_portal.url, live_portal.app.config)


@pytest.fixture
def merchant(app):
    return factories.make_merchant()


def settled(timeout: float = 5) -> None:
    """Wait until this process wrote every reply outcome (written after the answer went out)."""
    deadline = time.monotonic() + timeout
    while inbound._in_flight and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not inbound._in_flight, "reply outcomes not written"


def counts() -> tuple[int, int]:
    """(messages, deliveries) stored."""
    settled()
    db.session.rollback()
    return (
        db.session.scalar(select(func.count()).select_from(RelayMessage)),
        db.session.scalar(select(func.count()).select_from(RelayDelivery)),
    )


def deliveries() -> list[RelayDelivery]:
    settled()
    db.session.rollback()
    db.session.expire_all()
    return list(db.session.scalars(select(RelayDelivery).order_by(RelayDelivery.id)))


def budget() -> float:
    return current_app.config["RELAY_REPLY_TIMEOUT"]
