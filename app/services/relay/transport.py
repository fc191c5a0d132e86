"""HTTP to the provider's services, for the reply path, test-sends and the outbox alike: urllib3
keep-alive pools (a third of requests' cost per call, on the reply's critical path), no
redirects followed, no retries here (the outbox retries with backoff; a reply is never
retried), answers capped. Errors are described in a few words, never with the answer's content.
"""

from __future__ import annotations

import threading

import certifi
import urllib3

from app.services.relay.formats import Request
from app.wechat._xml import MAX_XML_BYTES

MAX_REPLY_BYTES = MAX_XML_BYTES  # a passive reply is a few KiB; more is not a reply
HTTPError = urllib3.exceptions.HTTPError  # what post() raises when no answer came
SHARED_POOL_SIZE = 32  # connections per host for callers without a pool: reply forwards, test-sends

_pools: dict[int, urllib3.PoolManager] = {}
_pools_lock = threading.Lock()


class AnswerUnread(Exception):
    """The status line came, but the body was too large or cut off (`status`: the status)."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


def pool(maxsize: int) -> urllib3.PoolManager:
    """This process's keep-alive connections for `maxsize` concurrent callers (created on first
    use, after any fork)."""
    with _pools_lock:
        found = _pools.get(maxsize)
        if found is None:
            found = _pools[maxsize] = urllib3.PoolManager(
                num_pools=100,  # hosts whose keep-alive connections are kept
                maxsize=maxsize,  # each caller may hold one connection to every host
                ca_certs=certifi.where(),  # the CA bundle requests uses for WeChat's API
            )
        return found


def post(
    request: Request,
    *,
    timeout: float,
    max_bytes: int = MAX_REPLY_BYTES,
    http: urllib3.PoolManager | None = None,
) -> tuple[int, bytes]:
    """POST `request`; returns (status code, body). A redirect is answered as it is (3xx), never
    followed. Raises HTTPError (refused, reset, timeout, ...) or AnswerUnread."""
    response = (http or pool(SHARED_POOL_SIZE)).request(
        "POST",
        request.url,
        body=request.body,
        headers=request.headers,
        timeout=urllib3.Timeout(connect=timeout, read=timeout),
        redirect=False,
        retries=False,
        preload_content=False,
    )
    try:
        body = response.read(max_bytes + 1, decode_content=False)
        if len(body) > max_bytes:
            raise AnswerUnread(response.status, f"answer larger than {max_bytes} bytes")
    except HTTPError as exc:
        response.close()  # closed before it goes back to the pool: never reused half-read
        raise AnswerUnread(response.status, f"answer cut off ({describe(exc)})") from None
    except AnswerUnread:
        response.close()
        raise
    finally:
        response.release_conn()
    return response.status, body


def describe(error: BaseException) -> str:
    """A short, content-free description of a failed POST."""
    # First: urllib3's NewConnectionError (refused, unresolvable) subclasses its TimeoutError.
    if isinstance(error, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ProtocolError):
        return "connection error"
    if isinstance(error, urllib3.exceptions.TimeoutError):
        return "timeout"
    if isinstance(error, urllib3.exceptions.SSLError):
        return "TLS error"
    if isinstance(error, AnswerUnread):
        return str(error)
    return type(error).__name__[:100]
