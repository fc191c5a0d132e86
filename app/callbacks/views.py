"""The URLs WeChat pushes to. Authenticated by msg_signature, so CSRF-exempt and sessionless."""

from flask import Blueprint, Response, request

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
    """Message-and-event URL: release-check answers for test accounts, `success` otherwise."""
    try:
        reply = messages.receive(appid, request.stream, request.content_length, request.args)
    except intake.Rejected as exc:
        return _plain(exc.reason, exc.status)
    return _plain(reply) if not reply.startswith("<") else Response(reply, mimetype="text/xml")
