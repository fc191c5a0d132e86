"""Users writing to authorized accounts: messages and events sent to the platform's message URL
the way WeChat relays them (reference §1.6, §1.7, §2.4).

WeChat waits 5 seconds per attempt and makes 3 attempts in total, resending the same request;
`success` or an empty body ends it, and so does a passive reply, which is verified and decrypted.
The push faults `delay` and `duplicate` apply; `out_of_order` and `pause_tickets` have no meaning
for one synchronous exchange.
"""

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass

from flask import current_app

from app.sandbox import clock, grants, platforms, pushes, runtime, tokens
from app.sandbox.errors import ConsentError, WechatError
from app.sandbox.models import Delivery, DeliveryAttempt, Platform, db
from app.wechat.crypto import MessageCrypto
from app.wechat.errors import CryptoError
from app.wechat.events import build_message_xml, parse_message

ATTEMPTS = 3  # WeChat: "3 attempts in total", whatever the platform answers (reference §2.4)
MSG_TYPES = ("text", "image", "voice", "event")
INFO_PREFIX = "message:"  # Delivery.info_type of user messages: "message:text", …


@dataclass(frozen=True)
class Outgoing:
    """One sealed message, ready to be (re)sent as-is."""

    delivery_id: int
    msg_id: int | None
    user_name: str  # the account's original id, the outer <ToUserName>
    request_url: str
    body: bytes
    crypto: MessageCrypto  # the platform's: seals the message, opens the reply


def default_openid(appid: str) -> str:
    """A stable fake openid of "the user" of one account (28 characters, like WeChat's)."""
    digest = hashlib.sha256(f"sandbox-user:{appid}".encode()).digest()
    return "o" + base64.urlsafe_b64encode(digest).decode()[:27]


def new_msg_id() -> int:
    """A MsgId shaped like WeChat's: a 19-digit (64-bit) number."""
    return 10**18 + secrets.randbelow(8 * 10**18)


def prepare(platform: Platform, body: dict) -> tuple[Outgoing, bool]:
    """Validate a user-message request to an account authorized to `platform` and record it;
    (the sealed message, duplicate fault?).

    Raises WechatError for an unknown (40013) or unauthorized (61003) account, ConsentError for
    a bad message. Call under the world lock, then commit."""
    account = grants.find_account(_text(body, "authorizer_appid"))
    if account is None:
        raise WechatError(40013)
    if tokens.active_authorization(account, platform.id) is None:
        raise WechatError(61003)
    msg_type = body.get("msg_type")
    if msg_type not in MSG_TYPES:
        raise ConsentError("bad_msg_type", f"msg_type must be one of {', '.join(MSG_TYPES)}")
    fields = _fields(msg_type, body)
    msg_id = None if msg_type == "event" else new_msg_id()
    if msg_id is not None:
        fields["MsgId"] = msg_id
    openid = _text(body, "openid") or default_openid(account.appid)
    if len(openid) > 64:
        raise ConsentError("bad_openid", "openid is at most 64 characters")
    inner = build_message_xml(account.user_name, openid, int(clock.now()), msg_type, **fields)
    url = platform.message_url.replace("$APPID$", account.appid)
    delivery = Delivery(
        platform_id=platform.id,
        info_type=INFO_PREFIX + msg_type,
        authorizer_appid=account.appid,
        url=url,
        inner_xml=inner,
        created_at=clock.now(),
        openid=openid,
        msg_id=msg_id,
    )
    db.session.add(delivery)
    db.session.flush()
    duplicate = bool(runtime.get().pushes_of(platform.appid).get("duplicate"))
    return _seal(delivery, account.user_name, platforms.crypto(platform)), duplicate


def _text(body: dict, key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConsentError("bad_value", f"{key} must be a string")
    return value


def _fields(msg_type: str, body: dict) -> dict:
    """The type's own fields, in WeChat's order (MsgId is added after them)."""
    if msg_type == "text":
        content = _text(body, "content")
        if not content:
            raise ConsentError("content_required", "a text message needs content")
        return {"Content": content}
    if msg_type == "event":
        event = _text(body, "event")
        if not event:
            raise ConsentError("event_required", "an event needs event (e.g. subscribe, CLICK)")
        key = _text(body, "event_key")
        return {"Event": event, **({"EventKey": key} if key else {})}
    media_id = _text(body, "media_id") or secrets.token_urlsafe(48)
    if msg_type == "image":
        pic_url = _text(body, "pic_url") or f"http://mmbiz.qpic.cn/mmbiz_jpg/{media_id[:24]}/0"
        return {"PicUrl": pic_url, "MediaId": media_id}
    return {"MediaId": media_id, "Format": "amr"}  # voice


def _seal(delivery: Delivery, user_name: str, box: MessageCrypto) -> Outgoing:
    request_url, data = pushes.seal(
        box,
        delivery.url,
        delivery.inner_xml,
        to_user_name=user_name,
        extra_query={"openid": delivery.openid},
    )
    return Outgoing(delivery.id, delivery.msg_id, user_name, request_url, data, box)


def send(outgoing: Outgoing, duplicate: bool) -> dict:
    """Deliver like WeChat (outside the world lock: attempts take seconds) and report:
    {msg_id, attempts, http_status, reply_xml, reply_ms, error, duplicate}."""
    delay = float(runtime.get().pushes_of(outgoing.crypto.appid).get("delay") or 0)
    if delay:
        time.sleep(delay)
    result = exchange(outgoing)
    again = None
    if duplicate:  # WeChat delivered the same message twice: same MsgId, sealed anew
        with runtime.get().lock:
            original = db.session.get(Delivery, outgoing.delivery_id)
            copy = Delivery(
                platform_id=original.platform_id,
                info_type=original.info_type,
                authorizer_appid=original.authorizer_appid,
                url=original.url,
                inner_xml=original.inner_xml,
                created_at=clock.now(),
                openid=original.openid,
                msg_id=original.msg_id,
                duplicate_of=original.id,
            )
            db.session.add(copy)
            db.session.flush()
            copied = _seal(copy, outgoing.user_name, outgoing.crypto)
            db.session.commit()
        again = exchange(copied)
    return {**result, "duplicate": again}


def exchange(outgoing: Outgoing) -> dict:
    """Up to 3 attempts of the same request until the platform answers 200; record each."""
    config = current_app.config
    timeout = float(config["SANDBOX_MESSAGE_TIMEOUT"])
    answered, reply_xml, elapsed_ms = False, None, None
    http_status = error = None
    number = 0
    for number in range(1, ATTEMPTS + 1):
        if number > 1:
            time.sleep(config["SANDBOX_PUSH_RETRY_DELAY"])
        started = time.monotonic()
        http_status, reply, error = pushes.post(outgoing.request_url, outgoing.body, timeout)
        elapsed_ms = round((time.monotonic() - started) * 1000, 1)
        answered = error is None and http_status == 200
        if answered:
            reply_xml, error = open_reply(outgoing.crypto, reply)
        elif error is None:
            error = f"HTTP {http_status}"
        _record_attempt(outgoing.delivery_id, number, http_status, reply, error, elapsed_ms)
        if answered:
            break
    with runtime.get().lock:
        delivery = db.session.get(Delivery, outgoing.delivery_id)
        if delivery is not None:  # None: the world was reset meanwhile
            delivery.status = "delivered" if answered and error is None else "failed"
            delivery.reply_xml = reply_xml
        db.session.commit()
    return {
        "msg_id": outgoing.msg_id,
        "attempts": number,
        "http_status": http_status,
        "reply_xml": reply_xml,
        "reply_ms": elapsed_ms if answered else None,
        "error": error,
    }


def open_reply(box: MessageCrypto, reply: str) -> tuple[str | None, str | None]:
    """(decrypted passive reply XML or None, why the reply is not valid or None).

    The platform runs in safe mode: a reply is `success`, empty, or encrypted XML."""
    if reply in ("", "success"):
        return None, None
    try:
        xml = box.open_reply(reply)
        parse_message(xml)
    except CryptoError as exc:
        return None, f"invalid reply: {exc}"
    return xml, None


def _record_attempt(delivery_id, number, http_status, reply, error, elapsed_ms) -> None:
    with runtime.get().lock:
        if db.session.get(Delivery, delivery_id) is not None:
            db.session.add(
                DeliveryAttempt(
                    delivery_id=delivery_id,
                    number=number,
                    at=clock.now(),
                    http_status=http_status,
                    reply=None if reply is None else reply[:2000],
                    error=error,
                    elapsed_ms=elapsed_ms,
                )
            )
        db.session.commit()
