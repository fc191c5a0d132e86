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
def events():
    """Authorization-event URL: store the push once, then answer exactly `success`."""
    try:
        intake.receive(request.stream, request.content_length, request.args)
    except intake.Rejected as exc:
        return _plain(exc.reason, exc.status)
    return _plain("success")


@bp.post("/messages/<appid>")
def messages_for(appid: str):
    """Message-and-event URL: release-check answers for test accounts, else the relay (a
    reply route's answer, or `success`)."""
    arrived = g.get("request_started") or time.perf_counter()  # set first thing by app/logs.py
    try:
        reply = messages.receive(
            appid, request.stream, request.content_length, request.args, arrived=arrived
        )
    except intake.Rejected as exc:
        return _plain(exc.reason, exc.status)
    return _plain(reply) if not reply.startswith("<") else Response(reply, mimetype="text/xml")
