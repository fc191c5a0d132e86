"""Pytest fixtures that run the WeChat sandbox (app/sandbox) on a real port.

Fixtures:

- ``sandbox_server`` (session): the sandbox on ``http://127.0.0.1:<port>`` in a thread, with a
  temporary SQLite database, no scheduled ticket pushes, fast push retries. A ``SandboxServer``.
- ``sandbox`` (function): the same server, reseeded (``reset()``) before the test. Use this one.
- ``receiver`` (function): a tiny HTTP server that records pushes and answers ``success`` (or
  whatever you queue in ``receiver.replies``). Point the sandbox at it with
  ``sandbox.configure(event_url=receiver.event_url, message_url=receiver.message_url)``.

Typical portal end-to-end use::

    def test_connect(sandbox, live_portal):
        sandbox.configure(event_url=live_portal.url + "/wechat/events",
                          message_url=live_portal.url + "/wechat/messages/$APPID$",
                          initiating_domain=live_portal.host)
        sandbox.push_ticket(); sandbox.flush()
        ...
        account = sandbox.account(scenario="fresh")
        result = sandbox.consent(pre_auth_code, account["admin"], account["appid"], [1, 2])
        ... follow result["redirect_url"] ...
        assert sandbox.state()["api_calls"]["api_query_auth"] == 1

Several platforms: ``sandbox.add_platform(appid=…, secret=…, …)`` registers another one; the
helpers take ``component_appid=`` (absent = the default platform), e.g.
``sandbox.component_token(component_appid=b)``, ``sandbox.push_ticket(component_appid=b)``,
``sandbox.configure(component_appid=b, event_url=…)``, ``sandbox.state(component_appid=b)``.

The server's settings can be overridden per session by defining a ``sandbox_config`` fixture
(a dict passed to ``create_app``) in a conftest.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

__all__ = ["SandboxServer", "Receiver", "ReceivedRequest"]


class SandboxServer:
    """A running sandbox: ``url``, ``app`` and helpers over its control API."""

    def __init__(self, app, url: str):
        self.app = app
        self.url = url
        self.http = requests.Session()
        self.secrets: dict[str, str] = {}  # component appid -> AppSecret of added platforms

    # --- plumbing ---------------------------------------------------------------------------

    def control(self, path: str, body: dict | None = None, *, expect: int = 200) -> dict:
        """POST to /sandbox/api/<path> and return the JSON (asserting the status)."""
        response = self.http.post(f"{self.url}/sandbox/api/{path}", json=body or {}, timeout=60)
        assert response.status_code == expect, (path, response.status_code, response.text)
        return response.json()

    def wechat(
        self,
        path: str,
        body: dict | None = None,
        *,
        token: str | None = None,
        token_name: str = "component_access_token",
    ) -> dict:
        """Call a WeChat API path (e.g. "component/api_query_auth") like an SDK would."""
        params = {token_name: token} if token else None
        response = self.http.post(
            f"{self.url}/cgi-bin/{path}", params=params, data=json.dumps(body or {}), timeout=30
        )
        assert response.status_code == 200, response.text
        return response.json()

    # --- control API --------------------------------------------------------------------------

    def state(self, component_appid: str | None = None) -> dict:
        """GET /sandbox/api/state (seen from one platform; default: the first)."""
        params = {"component_appid": component_appid} if component_appid else None
        return self.http.get(f"{self.url}/sandbox/api/state", params=params, timeout=30).json()

    def reset(self, seed: int | None = None, **platform) -> None:
        """Reseed the world (one platform again); then apply ``configure(**platform)``."""
        self.control("reset", {"seed": seed} if seed is not None else {})
        self.secrets.clear()
        if platform:
            self.configure(**platform)

    def configure(self, **platform) -> dict:
        """Repoint event_url / message_url / initiating_domain / permission_set_ids (of the
        platform ``component_appid=`` names, default the first)."""
        return self.control("platform", platform)

    def add_platform(self, **body) -> dict:
        """POST /sandbox/api/platforms {appid, secret, token, encoding_aes_key, event_url,
        message_url, initiating_domain, permission_set_ids, name?, release_state?,
        test_accounts?, ip_whitelist?}; returns the platform."""
        platform = self.control("platforms", body, expect=201)
        self.secrets[platform["appid"]] = body["secret"]
        return platform

    def release(self, component_appid: str, **body) -> dict:
        """POST /sandbox/api/platforms/<appid>/release {state?, test_accounts?}."""
        return self.control(f"platforms/{component_appid}/release", body)

    def push_ticket(self, component_appid: str | None = None) -> str:
        """Mint and push a component_verify_ticket; returns its value."""
        body = {"component_appid": component_appid} if component_appid else {}
        return self.control("push-ticket", body)["ticket"]

    def consent(
        self,
        pre_auth_code: str,
        wechat_user,
        authorizer_appid: str,
        permission_set_ids,
        *,
        redirect_uri: str | None = None,
        component_appid: str | None = None,
        expect: int = 200,
    ) -> dict:
        """Do the phone flow; returns {redirect_url, auth_code, expires_in, info_type, …}."""
        body = {
            "pre_auth_code": pre_auth_code,
            "wechat_user": wechat_user,
            "authorizer_appid": authorizer_appid,
            "permission_set_ids": list(permission_set_ids),
        }
        if redirect_uri:
            body["redirect_uri"] = redirect_uri
        if component_appid:
            body["component_appid"] = component_appid
        return self.control("consent", body, expect=expect)

    def revoke(self, authorizer_appid: str, component_appid: str | None = None) -> dict:
        """The merchant revokes (pushes unauthorized)."""
        body = {"authorizer_appid": authorizer_appid}
        if component_appid:
            body["component_appid"] = component_appid
        return self.control("revoke", body)

    def update(
        self, authorizer_appid: str, permission_set_ids, component_appid: str | None = None
    ) -> dict:
        """The merchant changes the sets (pushes updateauthorized if they changed)."""
        body = {
            "authorizer_appid": authorizer_appid,
            "permission_set_ids": list(permission_set_ids),
        }
        if component_appid:
            body["component_appid"] = component_appid
        return self.control("update", body)

    def set_faults(self, **body) -> dict:
        """POST /sandbox/api/faults, e.g. ``set_faults(endpoints={"api_query_auth":
        {"errcode": -1, "times": 1}})``, transport faults ``{"http_status": 502}``,
        ``{"reset": True}``, ``{"non_json": True}``, ``{"timeout": True}`` (or seconds),
        ``set_faults(pushes={"duplicate": True})``, ``set_faults(foreign_refresh=True)``,
        ``set_faults(clear=True)``. The IP whitelist: ``configure(ip_whitelist=[...])``."""
        return self.control("faults", body)

    def clock(
        self, offset_seconds: float | None = None, *, advance_seconds: float | None = None
    ) -> dict:
        """Time travel: set the offset, or advance it."""
        body = {}
        if offset_seconds is not None:
            body["offset_seconds"] = offset_seconds
        if advance_seconds is not None:
            body["advance_seconds"] = advance_seconds
        return self.control("clock", body)

    def quotas(self, **limits) -> dict:
        """Set daily limits per API name (None = unlimited)."""
        return self.control("quotas", limits)

    def flush(self, timeout: float = 30) -> None:
        """Wait until every queued push was delivered (or failed all attempts)."""
        assert self.control("flush", {"timeout": timeout})["flushed"], "pushes did not drain"

    def user_message(self, authorizer_appid: str, msg_type: str = "text", *, expect=200, **body):
        """A user writes to an authorized account (``content=``, ``event=``, ``event_key=``,
        ``openid=``, …); returns {msg_id, attempts, http_status, reply_xml, reply_ms, error,
        duplicate}."""
        return self.control(
            "user-message",
            {"authorizer_appid": authorizer_appid, "msg_type": msg_type, **body},
            expect=expect,
        )

    def release_check(self, **body) -> dict:
        """Run the release checks against the message URL."""
        return self.control("release-check", body)

    # --- conveniences ---------------------------------------------------------------------------

    @property
    def component_appid(self) -> str:
        return self.app.config["WECHAT_COMPONENT_APPID"]

    @property
    def component_secret(self) -> str:
        return self.app.config["WECHAT_COMPONENT_APPSECRET"]

    def api_calls(self) -> dict:
        """Calls per API name, e.g. {"api_query_auth": 1}."""
        return self.state()["api_calls"]

    def deliveries(self, info_type: str | None = None) -> list[dict]:
        """Recorded pushes (optionally of one InfoType), oldest first."""
        found = self.state()["deliveries"]
        return [d for d in found if info_type is None or d["info_type"] == info_type]

    def account(self, *, scenario: str | None = None, type: str | None = None) -> dict:
        """The first seeded account matching a scenario (fresh, exclusive_elsewhere,
        provider_limit, shared, release_test) and/or type (official_account, mini_program)."""
        for account in self.state()["accounts"]:
            if scenario and account["scenario"] != scenario:
                continue
            if type and account["type"] != type:
                continue
            return account
        raise LookupError(f"no account with scenario={scenario!r} type={type!r}")

    def component_token(self, component_appid: str | None = None) -> str:
        """Push a ticket and exchange it for a component_access_token (not via the portal)."""
        appid = component_appid or self.component_appid
        ticket = self.push_ticket(component_appid)
        result = self.wechat(
            "component/api_component_token",
            {
                "component_appid": appid,
                "component_appsecret": self.secrets.get(appid, self.component_secret),
                "component_verify_ticket": ticket,
            },
        )
        return result["component_access_token"]

    def pre_auth_code(self, token: str, component_appid: str | None = None) -> str:
        """A fresh pre_auth_code."""
        result = self.wechat(
            "component/api_create_preauthcode",
            {"component_appid": component_appid or self.component_appid},
            token=token,
        )
        return result["pre_auth_code"]

    def authorize(
        self,
        token: str,
        *,
        scenario: str = "fresh",
        type: str = "official_account",
        permission_set_ids=None,
        redirect_uri: str | None = None,
        component_appid: str | None = None,
    ) -> dict:
        """Consent for a seeded account with a fresh pre_auth_code; returns the consent result
        plus "account"."""
        account = self.account(scenario=scenario, type=type)
        sets = permission_set_ids or account["offered_permission_set_ids"][:2]
        result = self.consent(
            self.pre_auth_code(token, component_appid),
            account["admin"],
            account["appid"],
            sets,
            redirect_uri=redirect_uri,
            component_appid=component_appid,
        )
        return {**result, "account": account}


def _serve(app, host: str = "127.0.0.1"):
    server = make_server(host, 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="sandbox-http", daemon=True)
    thread.start()
    return server, f"http://{host}:{server.server_port}"


@pytest.fixture(scope="session")
def sandbox_config() -> dict:
    """Overrides for the session's sandbox app (override this fixture to change them)."""
    return {}


@pytest.fixture(scope="session")
def sandbox_server(tmp_path_factory, sandbox_config):
    """The sandbox serving on an ephemeral 127.0.0.1 port for the whole session."""
    from app.sandbox import create_app

    db_path = tmp_path_factory.mktemp("sandbox") / "sandbox.sqlite"
    config = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{db_path}",
        "SANDBOX_TICKET_INTERVAL": 0,
        "SANDBOX_PUSH_RETRY_DELAY": 0.05,
        "SANDBOX_PUSH_TIMEOUT": 5,
        "SANDBOX_RELEASE_WAIT": 5,
        # Until a test points them somewhere, pushes go to a closed port and fail fast.
        "SANDBOX_EVENT_URL": "http://127.0.0.1:9/wechat/events",
        "SANDBOX_MESSAGE_URL": "http://127.0.0.1:9/wechat/messages/$APPID$",
        **sandbox_config,
    }
    app = create_app(config)
    server, url = _serve(app)
    yield SandboxServer(app, url)
    server.shutdown()


@pytest.fixture
def sandbox(sandbox_server) -> SandboxServer:
    """The session's sandbox, reseeded for this test."""
    sandbox_server.reset()
    return sandbox_server


# --- receiver ---------------------------------------------------------------------------------


class ReceivedRequest:
    """One request the receiver got."""

    def __init__(self, method: str, path: str, query: dict, body: bytes, headers: dict):
        self.method, self.path, self.query, self.body, self.headers = (
            method,
            path,
            query,
            body,
            headers,
        )

    def open(self, crypto) -> str:
        """Verify msg_signature and decrypt with an app.wechat.crypto.MessageCrypto."""
        q = self.query
        return crypto.decrypt_message(self.body, q["msg_signature"], q["timestamp"], q["nonce"])


class Receiver:
    """Records every request; answers from ``replies`` (FIFO) and then ``default_reply``.

    A reply is a string (HTTP 200), a ``(status, text)`` tuple, or a callable taking the
    ``ReceivedRequest`` and returning either.
    """

    def __init__(self):
        self.requests: list[ReceivedRequest] = []
        self.replies: deque = deque()
        self.default_reply = "success"
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.event_url = self.url + "/wechat/events"
        self.message_url = self.url + "/wechat/messages/$APPID$"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                split = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = ReceivedRequest(
                    "POST",
                    split.path,
                    dict(urllib.parse.parse_qsl(split.query)),
                    self.rfile.read(length),
                    dict(self.headers),
                )
                status, text = receiver._reply_for(request)
                data = text.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        return Handler

    def _reply_for(self, request: ReceivedRequest) -> tuple[int, str]:
        with self.lock:
            self.requests.append(request)
            reply = self.replies.popleft() if self.replies else self.default_reply
            self.arrived.notify_all()
        if callable(reply):
            reply = reply(request)
        return reply if isinstance(reply, tuple) else (200, reply)

    def wait_for(self, count: int, timeout: float = 10) -> list[ReceivedRequest]:
        """Block until at least `count` requests arrived; return them."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.requests) >= count, timeout)
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    """An HTTP endpoint recording pushes (see ``Receiver``)."""
    instance = Receiver()
    yield instance
    instance.close()


@pytest.fixture(scope="session")
def sandbox_artifacts() -> Path:
    """Where sandbox tests save screenshots."""
    path = Path("test-artifacts/sandbox")
    path.mkdir(parents=True, exist_ok=True)
    return path
