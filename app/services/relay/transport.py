"""HTTP to the provider's services: one requests.Session per thread, no redirects, a capped
reply body. Errors are described in a few words, never with the reply's content."""

from __future__ import annotations

import threading

import requests

from app.services.relay.formats import Request
from app.wechat._xml import MAX_XML_BYTES

MAX_REPLY_BYTES = MAX_XML_BYTES  # a passive reply is a few KiB; more is not a reply
_local = threading.local()


class ReplyTooLarge(Exception):
    """The service answered with more than MAX_REPLY_BYTES."""


def session() -> requests.Session:
    """This thread's session (keep-alive connections are reused per thread)."""
    current = getattr(_local, "session", None)
    if current is None:
        current = _local.session = requests.Session()
    return current


def post(
    request: Request, *, timeout: float | tuple[float, float], max_bytes: int = MAX_REPLY_BYTES
) -> tuple[int, bytes]:
    """POST `request`; returns (status code, body). Raises requests' exceptions, or
    ReplyTooLarge. A redirect is answered as it is (3xx), never followed."""
    with session().post(
        request.url,
        data=request.body,
        headers=request.headers,
        timeout=timeout,
        allow_redirects=False,
        stream=True,
    ) as response:
        body = bytearray()
        for chunk in response.iter_content(8192):
            body += chunk
            if len(body) > max_bytes:
                raise ReplyTooLarge(f"reply larger than {max_bytes} bytes")
        return response.status_code, bytes(body)


def describe(error: BaseException) -> str:
    """A short, content-free description of a failed POST."""
    if isinstance(error, requests.Timeout):
        return "timeout"
    if isinstance(error, requests.exceptions.SSLError):
        return "TLS error"
    if isinstance(error, requests.ConnectionError):
        return "connection error"
    if isinstance(error, ReplyTooLarge):
        return str(error)
    return type(error).__name__[:100]
