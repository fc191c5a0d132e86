"""The two wire formats a relay route speaks: what is sent, and how a reply is read.

`wechat-xml` is WeChat's own plaintext mode, so a handler written for WeChat (wechatpy,
EasyWeChat, WxJava) works unchanged: `POST url?signature&timestamp&nonce&openid`, the decrypted
XML as the body, `signature` = SHA-1 of the sorted route token, timestamp and nonce; the reply
is the plaintext reply XML, `success` or empty. `json` is signed and headed like the grant
webhooks; its reply, where a reply is allowed, is `{"reply": {"MsgType": ..., ...}}`.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode, urlsplit, urlunsplit

from app.services.notify.webhooks import sign
from app.wechat.crypto import sha1_signature
from app.wechat.replies import NO_REPLY, InvalidReply, check_passive_reply, nest, reply_from_json

EVENT = "relay.message"  # X-Grantdesk-Event of json deliveries


@dataclass(frozen=True)
class Outgoing:
    """One message as the route receives it: everything a delivery attempt needs to send."""

    message_id: int
    delivery_id: int
    component_appid: str
    authorizer_appid: str
    merchant_id: int | None
    received_at: datetime
    xml: str
    fields: dict[str, str]  # flattened, as parsed


@dataclass(frozen=True)
class Request:
    url: str
    headers: dict[str, str]
    body: bytes


def build_request(route, outgoing: Outgoing, *, timestamp: int) -> Request:
    """The HTTP request that carries `outgoing` to `route` in the route's format."""
    if route.format == "wechat-xml":
        return _wechat_xml_request(route, outgoing, str(timestamp))
    return _json_request(route, outgoing, str(timestamp))


def _wechat_xml_request(route, outgoing: Outgoing, timestamp: str) -> Request:
    nonce = str(secrets.randbelow(10**10))
    query = {
        "signature": sha1_signature(route.token or "", timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
        "openid": outgoing.fields.get("FromUserName", ""),
    }
    headers = {"Content-Type": "text/xml; charset=utf-8"}
    return Request(_with_query(route.url, query), headers, outgoing.xml.encode("utf-8"))


def _json_request(route, outgoing: Outgoing, timestamp: str) -> Request:
    document = {
        "id": outgoing.message_id,
        "component_appid": outgoing.component_appid,
        "authorizer_appid": outgoing.authorizer_appid,
        "merchant_id": outgoing.merchant_id,
        "received_at": outgoing.received_at.isoformat(),
        "message": nest(outgoing.fields),
    }
    body = json.dumps(document, ensure_ascii=False, sort_keys=True).encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "X-Grantdesk-Event": EVENT,
        "X-Grantdesk-Delivery": str(outgoing.delivery_id),
        "X-Grantdesk-Timestamp": timestamp,
        "X-Grantdesk-Signature": sign(route.secret or "", timestamp, body),
    }
    return Request(route.url, headers, body)


def _with_query(url: str, query: dict[str, str]) -> str:
    parts = urlsplit(url)
    joined = "&".join(part for part in (parts.query, urlencode(query)) if part)
    return urlunsplit(parts._replace(query=joined))


def read_reply(route, outgoing: Outgoing, body: bytes, *, now: int) -> str | None:
    """The handler's passive reply as checked plaintext XML, None for none; InvalidReply else."""
    to_user = outgoing.fields.get("FromUserName", "")
    from_user = outgoing.fields.get("ToUserName", "")
    try:
        text = body.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InvalidReply("reply is not UTF-8") from None
    if text in NO_REPLY:
        return None
    if route.format == "wechat-xml":
        return check_passive_reply(text, to_user=to_user, from_user=from_user)
    try:
        document = json.loads(text)
    except ValueError:
        raise InvalidReply("reply is not JSON") from None
    if not isinstance(document, dict) or document.get("reply") is None:
        return None
    return reply_from_json(document["reply"], to_user=to_user, from_user=from_user, create_time=now)
