"""Pytest fixtures that serve the portal on a real port, wired to the sandbox.

Fixtures:

- ``live_portal`` (function): the test's own ``app`` (same database, fresh per test) served by
  werkzeug on ``http://127.0.0.1:<port>`` in a thread. Its ``WECHAT_API_BASE``,
  ``WECHAT_MP_BASE`` and ``WECHAT_OPEN_BASE`` point at the ``sandbox`` fixture,
  ``PUBLIC_BASE_URL`` is its own URL, and the sandbox pushes to it (event URL, message URL,
  initiating domain). A ``LivePortal`` with ``url``, ``host``, ``app``, ``http`` (a
  requests.Session) and helpers:

  - ``call(fn, *args)``: run ``fn`` in a fresh app context (as a request or a job would) and
    return its result; use it for service calls and fresh reads of what the server wrote.
  - ``wait_for(predicate, timeout=10)``: poll ``call(predicate)`` until it is truthy.

- ``portal_clock`` (function): ``app.services.clock``, reset to real time after the test.

Typical use::

    def test_ticket(sandbox, live_portal):
        sandbox.push_ticket(); sandbox.flush()
        token = live_portal.call(credentials.component_access_token)

Server threads push their own app contexts, so requests never share the test's ``g`` or
DB session; the test's session may hold an old snapshot, so read through ``call`` (or
``db.session.commit()`` / ``expire_all()`` first).
"""

from __future__ import annotations

import contextvars
import threading
import time
import urllib.parse

import pytest
import requests
from werkzeug.serving import make_server

from app.extensions import db
from app.services import clock

__all__ = ["LivePortal"]


class LivePortal:
    """The portal running on a real port (see the module docstring)."""

    def __init__(self, app, url: str):
        self.app = app
        self.url = url
        self.host = urllib.parse.urlsplit(url).netloc
        self.http = requests.Session()

    def call(self, fn, *args, **kwargs):
        """Run fn in a fresh context with its own app context and DB session."""

        def run():
            with self.app.app_context():
                try:
                    return fn(*args, **kwargs)
                finally:
                    db.session.remove()

        return contextvars.Context().run(run)

    def wait_for(self, predicate, timeout: float = 10, interval: float = 0.05):
        """Poll call(predicate) until truthy; return its value or fail the test."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.call(predicate)
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"condition not met within {timeout}s: {predicate}")
            time.sleep(interval)


@pytest.fixture
def portal_clock():
    """The portal's clock (app.services.clock); back to real time after the test."""
    yield clock
    clock.reset()


@pytest.fixture
def live_portal(app, sandbox):
    """The test's app served on an ephemeral port, talking to and pushed to by the sandbox."""
    app.config.update(
        WECHAT_API_BASE=sandbox.url, WECHAT_MP_BASE=sandbox.url, WECHAT_OPEN_BASE=sandbox.url
    )
    app.extensions.pop("grantdesk.wechat", None)  # rebuild the client for the new base URL
    db.session.commit()  # whatever the test set up is visible to the server
    server = make_server("127.0.0.1", 0, app, threaded=True)
    portal = LivePortal(app, f"http://127.0.0.1:{server.server_port}")
    app.config["PUBLIC_BASE_URL"] = portal.url
    sandbox.configure(
        event_url=portal.url + "/wechat/events",
        message_url=portal.url + "/wechat/messages/$APPID$",
        initiating_domain=portal.host,
    )
    # A new thread starts with an empty contextvars context: no leak of the test's app context.
    thread = threading.Thread(target=server.serve_forever, name="portal-http", daemon=True)
    thread.start()
    yield portal
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
    clock.reset()
    db.session.rollback()
