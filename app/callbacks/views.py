"""The URLs WeChat pushes to. Authenticated by msg_signature, so CSRF-exempt and sessionless."""

import time

from flask import Blueprint, Response, g, request

from app.extensions import csrf
from app.services.platform import intake, messages

bp = Blueprint("callbacks", __name__)
csrf.exempt(bp)


def _plain(text: str, status: int = 200) -> Response:
    return Response(text, status=status, mimetype="text/plain")


@bp.post("/events")
@bp.post("/<component_appid>/events")
def events(component_appid: str | None = None):
    """Authorization-event URL, one for every platform (routed by the push's AppId) or one
    per platform: store the push once, then answer exactly `success`."""
    try:
        intake.receive(
            request.stream, request.content_length, request.args, component_appid=component_appid
        )
    except intake.Rejected as exc:
        return _plain(exc.reason, exc.status)
    return _plain("success")


@bp.post("/messages/<appid>")
@bp.post("/<component_appid>/messages/<appid>")
def messages_for(appid: str, component_appid: str | None = None):
    """Message-and-event URL (the default platform's, or the named platform's): release-check
    answers for test accounts, else the relay (a reply route's answer, or `success`)."""
    arrived = g.get("request_started") or time.perf_counter()  # set first thing by app/logs.py
    try:
        reply = messages.receive(
            appid,
            request.stream,
            request.content_length,
            request.args,
            arrived=arrived,
            component_appid=component_appid,
        )
    except intake.Rejected as exc:
        return _plain(exc.reason, exc.status)
    return _plain(reply) if not reply.startswith("<") else Response(reply, mimetype="text/xml")
