"""Switchable faults: per-endpoint errors and latency, token accidents, push misbehaviour."""

import time

from app.sandbox import runtime, tokens, world
from app.sandbox.errors import ConsentError, WechatError
from app.sandbox.grants import find_account

PUSH_FAULTS = ("pause_tickets", "duplicate", "delay", "out_of_order")


def configure(body: dict) -> dict:
    """Apply a faults request (see the control API docs) and return the current faults."""
    state = runtime.get()
    if body.get("clear"):
        state.endpoint_faults.clear()
        state.push_faults.clear()
    for name, spec in (body.get("endpoints") or {}).items():
        if not spec:
            state.endpoint_faults.pop(name, None)
            continue
        state.endpoint_faults[name] = {
            "errcode": spec.get("errcode"),
            "latency": float(spec.get("latency") or 0),
            "times": spec.get("times"),
        }
    for name, value in (body.get("pushes") or {}).items():
        if name not in PUSH_FAULTS:
            raise ConsentError("unknown_fault", f"unknown push fault {name!r}")
        if value:
            state.push_faults[name] = value
        else:
            state.push_faults.pop(name, None)
    if body.get("foreign_refresh"):
        tokens.foreign_refresh()
    if body.get("rotate_refresh_token"):
        _rotate(body["rotate_refresh_token"])
    return snapshot()


def _rotate(appid: str) -> None:
    """The stored refresh token goes stale at once (61023); the list API knows the new one."""
    grant = tokens.active_authorization(find_account(appid))
    if grant is None:
        raise ConsentError("not_authorized", "account is not authorized to this platform")
    tokens.rotate_refresh_token(grant, world.new_refresh_token(), transition=False)


def snapshot() -> dict:
    """The faults in force."""
    state = runtime.get()
    return {
        "endpoints": {k: dict(v) for k, v in state.endpoint_faults.items()},
        "pushes": dict(state.push_faults),
    }


def apply(name: str) -> None:
    """Run before an API: sleep for latency faults, raise for error faults."""
    faults = runtime.get().endpoint_faults
    spec = faults.get(name) or faults.get("*")
    if not spec:
        return
    if spec["latency"]:
        time.sleep(spec["latency"])
    if spec["errcode"] is None:
        return
    if spec["times"] is not None:
        spec["times"] -= 1
        if spec["times"] <= 0:
            faults.pop(name if name in faults else "*", None)
    raise WechatError(int(spec["errcode"]))
