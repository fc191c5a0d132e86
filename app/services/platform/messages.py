"""Messages WeChat sends for authorizers: answer WeChat's release checks ourselves, relay the
rest to the provider's services (app/services/relay/inbound.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

from flask import Flask, current_app

from app import metrics
from app.services import clock
from app.services.platform import health, intake, platforms
from app.services.platform.credentials import call_with_component_token
from app.services.platform.platforms import message_crypto, wechat_client
from app.services.relay import inbound
from app.wechat.errors import MalformedMessage, WeChatError
from app.wechat.events import parse_message
from app.wechat.release import ReplyPlan, expected_reply, passive_reply_xml, release_test_account

log = logging.getLogger(__name__)

# The QUERY_AUTH_CODE answer must go out within seconds but after our (empty) reply.
_follow_ups = ThreadPoolExecutor(max_workers=4, thread_name_prefix="release-check")


def receive(
    appid: str,
    stream: BinaryIO,
    content_length: int | None,
    args: Mapping[str, str],
    *,
    arrived: float | None = None,
    component_appid: str | None = None,
) -> str:
    """Verify and decrypt a message for `appid` on a platform (the URL's `component_appid`,
    default: the default platform); return the reply body ("" or "success" or XML).

    `arrived` (time.perf_counter() when the request arrived) starts the reply budget."""
    arrived = time.perf_counter() if arrived is None else arrived
    try:
        body = intake.read_body(stream, content_length)
        opened = intake.open_push(
            body, args, outer_tag="ToUserName", component_appid=component_appid
        )
        message = parse_message(opened.xml)
    except MalformedMessage:
        health.count("rejected:messages:malformed")
        raise intake.Rejected("malformed") from None
    except intake.Rejected as exc:
        health.count(f"rejected:messages:{exc.reason}")
        raise
    with platforms.using(opened.receive_id):
        return _answer(appid, message, opened, args, arrived)


def _answer(appid: str, message, opened, args: Mapping[str, str], arrived: float) -> str:
    if release_test_account(appid) is None and release_test_account(message.to_user_name) is None:
        return inbound.relay(appid, message, opened, args, arrived=arrived)
    metrics.RELAY_MESSAGES.labels(outcome="release_check").inc()
    plan = expected_reply(message)
    health.count(f"messages:release:{plan.check}")
    if plan.needs_api_follow_up:
        app = current_app._get_current_object()
        _follow_ups.submit(_answer_query_auth_code, app, opened.receive_id, plan)
        return ""
    if plan.reply_text is None:
        return "success"
    xml = passive_reply_xml(message, plan, int(clock.now().timestamp()))
    return message_crypto().encrypt_reply(
        xml, args["timestamp"], args["nonce"], use_previous_key=opened.used_previous_key
    )


def _answer_query_auth_code(app: Flask, component_appid: str, plan: ReplyPlan) -> None:
    """Exchange the test code and send "<code>_from_api" by the customer-service API."""
    with app.app_context(), platforms.using(component_appid):
        client = wechat_client()
        try:
            info = call_with_component_token(
                lambda token: client.query_auth(token, plan.query_auth_code)
            )
            client.send_custom_message(
                info.authorizer_access_token, plan.to_user, plan.custom_message
            )
        except (WeChatError, intake.DomainError) as exc:
            log.warning("release check QUERY_AUTH_CODE failed: %s", type(exc).__name__)
            return
    log.info("release check QUERY_AUTH_CODE answered")
