"""A scripted WeChat API stand-in on a real local port (http.server in a thread)."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Reply:
    """One scripted answer: JSON (or raw bytes), an HTTP status, and an optional delay."""

    body: Any = field(default_factory=lambda: {"errcode": 0, "errmsg": "ok"})
    status: int = 200
    delay: float = 0.0


@dataclass
class Seen:
    """One request as the server received it."""

    path: str
    query: dict[str, list[str]]
    body: Any
    raw: bytes
    content_type: str


class FakeWeChat:
    """Serve scripted replies per path; record every request."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                split = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                with fake._lock:
                    fake.requests.append(
                        Seen(
                            split.path,
                            parse_qs(split.query),
                            body,
                            raw,
                            self.headers.get("Content-Type", ""),
                        )
                    )
                    queue = fake._scripts[split.path]
                    reply = queue.popleft() if len(queue) > 1 else (queue[0] if queue else Reply())
                if reply.delay:
                    time.sleep(reply.delay)
                data = (
                    reply.body
                    if isinstance(reply.body, bytes)
                    else json.dumps(reply.body, ensure_ascii=False).encode()
                )
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timeout tests)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def start(self) -> FakeWeChat:
        """Start serving in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def script(self, path: str, *replies: Reply | dict | bytes) -> None:
        """Queue replies for a path; the last one repeats."""
        for reply in replies:
            self._scripts[path].append(reply if isinstance(reply, Reply) else Reply(reply))

    def hits(self, path: str) -> list[Seen]:
        """Requests received for one path."""
        return [seen for seen in self.requests if seen.path == path]
