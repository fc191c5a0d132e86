"""WeChat's release (全网发布) checks, run per platform against its message URL with its keys."""

import random
import time
from dataclasses import dataclass

from defusedxml import ElementTree
from flask import current_app
from sqlalchemy import select

from app.sandbox import catalog, clock, grants, platforms, pushes, runtime, tokens
from app.sandbox.models import CustomMessage, Delivery, DeliveryAttempt, Platform, db
from app.wechat.crypto import MessageCrypto
from app.wechat.events import build_message_xml
from app.wechat.release import API_REPLY_SUFFIX, EVENT_REPLY_SUFFIX, QUERY_AUTH_PREFIX, TEXT_REPLY
from app.wechat.release import TEXT_TRIGGER as TEXT

TEST_OPENID = "ozy4qt5QUADNXORxCVipKMV9dss0"
EVENT = "LOCATION"


@dataclass(frozen=True)
class Target:
    """The platform under check, read once (the checks run outside the world lock)."""

    platform_id: int
    component_appid: str
    message_url: str
    crypto: MessageCrypto


def run(
    platform_id: int,
    wait_seconds: float | None = None,
    appids: list[str] | None = None,
    group=1,
) -> dict:
    """Run a platform's checks for one group of test accounts (WeChat picks one at random)."""
    with runtime.get().lock:
        platform = db.session.get(Platform, platform_id)
        target = Target(
            platform.id, platform.appid, platform.message_url, platforms.crypto(platform)
        )
        db.session.rollback()
    wait = float(
        wait_seconds if wait_seconds is not None else current_app.config["SANDBOX_RELEASE_WAIT"]
    )
    specs = catalog.release_accounts()
    if group == "random":
        group = random.choice(sorted({s["group"] for s in specs}))
    results = []
    for spec in specs:
        if appids and spec["appid"] not in appids:
            continue
        if not appids and group != "all" and spec["group"] != int(group):
            continue
        if spec["type"] == "official_account":
            results.append(_check_event(target, spec))
        results.append(_check_text(target, spec))
        results.append(_check_query_auth_code(target, spec, wait))
    return {
        "component_appid": target.component_appid,
        "group": group,
        "passed": bool(results) and all(r["passed"] for r in results),
        "checks": results,
        "at": clock.iso(clock.now()),
    }


def _result(spec: dict, check: str, passed: bool, reason: str, reply=None) -> dict:
    return {
        "appid": spec["appid"],
        "check": check,
        "passed": passed,
        "reason": reason,
        "reply": reply,
    }


def _send(
    target: Target, spec: dict, msg_type: str, check: str, **fields
) -> tuple[int | None, str, str | None]:
    """Encrypt and POST one message as WeChat relays it; record it as a delivery."""
    inner = build_message_xml(spec["user_name"], TEST_OPENID, int(clock.now()), msg_type, **fields)
    url = target.message_url.replace("$APPID$", spec["appid"])
    status, reply, error = pushes.signed_post(
        target.crypto,
        url,
        inner,
        to_user_name=spec["user_name"],
        extra_query={"openid": TEST_OPENID},
    )
    with runtime.get().lock:
        delivery = Delivery(
            platform_id=target.platform_id,
            info_type=f"release:{check}",
            authorizer_appid=spec["appid"],
            url=url,
            inner_xml=inner,
            created_at=clock.now(),
            status="delivered" if status == 200 else "failed",
        )
        db.session.add(delivery)
        db.session.flush()
        db.session.add(
            DeliveryAttempt(
                delivery_id=delivery.id,
                number=1,
                at=clock.now(),
                http_status=status,
                reply=reply,
                error=error,
            )
        )
        db.session.commit()
    return status, reply or "", error


def _reply_fields(box: MessageCrypto, reply: str) -> dict[str, str]:
    """Parse a passive reply, decrypting it (with the platform's key) when it is encrypted."""
    root = ElementTree.fromstring(reply.encode("utf-8"))
    if root.find("Encrypt") is not None:
        inner = (
            box.open_reply(reply)
            if root.find("MsgSignature") is not None
            else box.decrypt(root.findtext("Encrypt"))
        )
        root = ElementTree.fromstring(inner.encode("utf-8"))
    return {child.tag: child.text or "" for child in root}


def _expect_text(
    target: Target, spec: dict, check: str, expected: str, status, reply: str, error
) -> dict:
    if error or status != 200:
        return _result(spec, check, False, f"HTTP {status or error}", reply)
    try:
        fields = _reply_fields(target.crypto, reply)
    except Exception as exc:  # any unparsable reply is a failed check, with the reason
        return _result(spec, check, False, f"reply is not valid (encrypted) XML: {exc}", reply)
    if fields.get("MsgType") != "text" or fields.get("Content") != expected:
        return _result(
            spec, check, False, f"expected text {expected!r}, got {fields.get('Content')!r}", reply
        )
    if fields.get("ToUserName") != TEST_OPENID or fields.get("FromUserName") != spec["user_name"]:
        return _result(spec, check, False, "reply addresses are not swapped", reply)
    return _result(spec, check, True, "ok", reply)


def _check_event(target: Target, spec: dict) -> dict:
    status, reply, error = _send(
        target,
        spec,
        "event",
        "event",
        Event=EVENT,
        Latitude="23.137466",
        Longitude="113.352425",
        Precision="119.385040",
    )
    return _expect_text(target, spec, "event", EVENT + EVENT_REPLY_SUFFIX, status, reply, error)


def _check_text(target: Target, spec: dict) -> dict:
    status, reply, error = _send(target, spec, "text", "text", Content=TEXT, MsgId=int(time.time()))
    return _expect_text(target, spec, "text", TEXT_REPLY, status, reply, error)


def _check_query_auth_code(target: Target, spec: dict, wait: float) -> dict:
    with runtime.get().lock:
        account = grants.find_account(spec["appid"])
        if tokens.active_authorization(account, target.platform_id) is None:
            db.session.rollback()
            return _result(spec, "query_auth_code", False, "account is not authorized")
        code = tokens.issue_auth_code(account, target.platform_id, None).value
        db.session.commit()
    started = clock.now()
    status, reply, error = _send(
        target,
        spec,
        "text",
        "query_auth_code",
        Content=QUERY_AUTH_PREFIX + code,
        MsgId=int(time.time()) + 1,
    )
    if error or status != 200:
        return _result(spec, "query_auth_code", False, f"HTTP {status or error}", reply)
    if reply not in ("", "success"):
        return _result(spec, "query_auth_code", False, "the immediate reply must be empty", reply)
    return _await_custom_message(target, spec, code, started, wait)


def _await_custom_message(
    target: Target, spec: dict, code: str, started: float, wait: float
) -> dict:
    deadline = time.monotonic() + wait
    expected = code + API_REPLY_SUFFIX
    while True:
        with runtime.get().lock:
            query = select(CustomMessage).filter(
                CustomMessage.platform_id == target.platform_id,
                CustomMessage.authorizer_appid == spec["appid"],
                CustomMessage.at >= started - 1,
            )
            sent = list(db.session.execute(query).scalars())
            db.session.rollback()
        for message in sent:
            if message.content == expected and message.touser == TEST_OPENID:
                if message.token_origin != code:
                    return _result(
                        spec,
                        "query_auth_code",
                        False,
                        "sent with a token not exchanged from this code",
                    )
                return _result(spec, "query_auth_code", True, "ok")
        if time.monotonic() >= deadline:
            got = [m.content for m in sent]
            return _result(
                spec,
                "query_auth_code",
                False,
                f"no customer-service message {expected!r} within {wait:g}s (got {got})",
            )
        time.sleep(0.1)
