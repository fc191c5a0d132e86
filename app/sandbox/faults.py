"""Switchable faults, per platform: per-endpoint errors, latency and transport failures, token
accidents, push misbehaviour. One platform's faults never touch another's calls or pushes."""

import socket
import struct
import time

from flask import Response, current_app, request

from app.sandbox import runtime, tokens, world
from app.sandbox.errors import ConsentError, WechatError
from app.sandbox.grants import find_account
from app.sandbox.models import Platform

PUSH_FAULTS = ("pause_tickets", "duplicate", "delay", "out_of_order")
ENDPOINT_KEYS = ("errcode", "latency", "times", "http_status", "reset", "non_json", "timeout")


class TransportFault(Exception):
    """An endpoint fault that breaks HTTP itself: no WeChat answer is computed."""

    def __init__(self, kind: str, value, component_appid: str):
        super().__init__(kind, value)
        self.kind = kind
        self.value = value
        self.component_appid = component_appid


def configure(platform: Platform, body: dict) -> dict:
    """Apply a faults request (see the control API docs) to one platform; return its faults."""
    state = runtime.get()
    endpoints, pushes = state.endpoints_of(platform.appid), state.pushes_of(platform.appid)
    if body.get("clear"):
        endpoints.clear()
        pushes.clear()
        state.release_hangs(platform.appid)
    for name, spec in (body.get("endpoints") or {}).items():
        if not spec:
            endpoints.pop(name, None)
            continue
        endpoints[name] = _endpoint_fault(name, spec)
    for name, value in (body.get("pushes") or {}).items():
        if name not in PUSH_FAULTS:
            raise ConsentError("unknown_fault", f"unknown push fault {name!r}")
        if value:
            pushes[name] = value
        else:
            pushes.pop(name, None)
    if body.get("foreign_refresh"):
        tokens.foreign_refresh(platform.id)
    if body.get("rotate_refresh_token"):
        _rotate(platform, body["rotate_refresh_token"])
    return snapshot(platform.appid)


def _endpoint_fault(name: str, spec) -> dict:
    """Validate one endpoint's fault spec; bad input is refused and changes nothing."""
    if not isinstance(spec, dict) or set(spec) - set(ENDPOINT_KEYS):
        raise ConsentError("unknown_fault", f"endpoint fault for {name!r}: keys {ENDPOINT_KEYS}")
    try:
        fault = {
            "errcode": None if spec.get("errcode") is None else int(spec["errcode"]),
            "latency": float(spec.get("latency") or 0),
            "times": None if spec.get("times") is None else int(spec["times"]),
            "http_status": None if spec.get("http_status") is None else int(spec["http_status"]),
            "reset": bool(spec.get("reset")),
            "non_json": bool(spec.get("non_json")),
            # true = hang longer than any client waits; a number = hang that many seconds.
            "timeout": _hang_seconds(spec.get("timeout")),
        }
    except (TypeError, ValueError):
        raise ConsentError("bad_fault", f"endpoint fault for {name!r} has a bad value") from None
    if fault["http_status"] is not None and not 400 <= fault["http_status"] <= 599:
        raise ConsentError("bad_fault", "http_status must be an HTTP error status (400-599)")
    if fault["latency"] < 0 or (fault["timeout"] or 0) < 0:
        raise ConsentError("bad_fault", "latency and timeout must not be negative")
    return fault


def _hang_seconds(value) -> float | None:
    if value is None or value is False:
        return None
    if value is True:
        return float(current_app.config["SANDBOX_FAULT_HANG"])
    return float(value)


def _rotate(platform: Platform, appid: str) -> None:
    """The stored refresh token goes stale at once (61023); the list API knows the new one."""
    grant = tokens.active_authorization(find_account(appid), platform.id)
    if grant is None:
        raise ConsentError("not_authorized", "account is not authorized to this platform")
    tokens.rotate_refresh_token(grant, world.new_refresh_token(), transition=False)


def snapshot(component_appid: str) -> dict:
    """The faults in force for one platform."""
    state = runtime.get()
    return {
        "endpoints": {k: dict(v) for k, v in state.endpoints_of(component_appid).items()},
        "pushes": dict(state.pushes_of(component_appid)),
    }


def apply(name: str, component_appid: str) -> None:
    """Run before a platform's API call: sleep for latency faults, raise for error and
    transport faults."""
    state = runtime.get()
    with state.lock:  # `times` counts down exactly once per call, whatever the concurrency
        faults = state.endpoints_of(component_appid)
        key = name if name in faults else "*"
        spec = faults.get(key)
        if not spec:
            return
        spec = dict(spec)
        fires = spec["errcode"] is not None or _transport_kind(spec) is not None
        if fires and spec["times"] is not None:
            faults[key]["times"] -= 1
            if faults[key]["times"] <= 0:
                faults.pop(key, None)
    if spec["latency"]:
        time.sleep(spec["latency"])
    kind = _transport_kind(spec)
    if kind is not None:
        raise TransportFault(kind, spec[kind], component_appid)
    if spec["errcode"] is not None:
        raise WechatError(spec["errcode"])


def _transport_kind(spec: dict) -> str | None:
    for kind in ("timeout", "reset", "http_status", "non_json"):
        if spec.get(kind) not in (None, False):
            return kind
    return None


def transport_response(fault: TransportFault) -> Response:
    """What the wire carries for a transport fault (the request is never processed)."""
    if fault.kind == "http_status":
        # What a gateway in front of WeChat answers: an HTML error page, not WeChat's JSON.
        body = f"<html><body><h1>{fault.value} Bad Gateway</h1></body></html>"
        return Response(body, status=fault.value, mimetype="text/html")
    if fault.kind == "non_json":
        return Response("<html><body>系统繁忙</body></html>", status=200, mimetype="text/html")
    if fault.kind == "timeout":
        runtime.get().hang_event(fault.component_appid).wait(fault.value)
    return Response(_drop_connection(request.environ), status=200)


def _drop_connection(environ):
    """A body that aborts the connection before a byte is sent (the client sees it closed)."""
    connection = environ.get("werkzeug.socket")
    if connection is not None:
        # Linger 0: the final close is a TCP reset rather than an orderly goodbye.
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        try:
            connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    raise ConnectionResetError("sandbox fault: connection reset")
    yield b""  # pragma: no cover - makes this a generator, so the reset happens while serving
