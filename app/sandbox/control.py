"""The control API (JSON, for tests and the demo) and the human dashboard at /sandbox/."""

import copy
from functools import wraps

from flask import Blueprint, current_app, jsonify, render_template, request

from app.sandbox import clock, faults, grants, messages, pushes, runtime, snapshot, world
from app.sandbox.config import parse_ip_list
from app.sandbox.errors import ConsentError, WechatError
from app.sandbox.models import db

bp = Blueprint("sandbox_control", __name__, url_prefix="/sandbox")


def control(view):
    """Run a control action under the world lock; ConsentError becomes a 400 JSON answer."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        body = request.get_json(silent=True) or {}
        with runtime.get().lock:
            try:
                result = view(body, *args, **kwargs)
                db.session.commit()
            except ConsentError as error:
                db.session.rollback()
                return jsonify({"error": error.code, "message": error.message}), 400
            except Exception:
                db.session.rollback()
                raise
        pushes.send_outbox()
        return jsonify(result)

    return wrapper


@bp.get("/api/state")
def state():
    """Everything: users, accounts, grants, credentials, deliveries, faults, calls, clock."""
    with runtime.get().lock:
        return jsonify(snapshot.state())


@bp.post("/api/consent")
@control
def consent(body):
    """Do the phone flow for a pre_auth_code; return the redirect the browser would follow."""
    return grants.consent(
        body.get("pre_auth_code", ""),
        body.get("wechat_user"),
        body.get("authorizer_appid"),
        [int(i) for i in body.get("permission_set_ids") or []],
        redirect_uri=body.get("redirect_uri"),
    )


@bp.post("/api/revoke")
@control
def revoke(body):
    """The merchant revokes the grant (pushes unauthorized)."""
    return grants.revoke(body.get("authorizer_appid"))


@bp.post("/api/update")
@control
def update(body):
    """The merchant changes the granted sets (pushes updateauthorized when they change)."""
    return grants.update(
        body.get("authorizer_appid"), [int(i) for i in body.get("permission_set_ids") or []]
    )


@bp.post("/api/push-ticket")
@control
def push_ticket(body):
    """Mint and push a component_verify_ticket now; returns its value."""
    return {"ticket": grants.push_ticket()}


@bp.get("/api/faults")
def get_faults():
    """The faults in force."""
    return jsonify(faults.snapshot())


@bp.post("/api/faults")
@control
def set_faults(body):
    """Switch faults on or off (see the README in app/sandbox/__init__.py)."""
    return faults.configure(body)


@bp.post("/api/clock")
@control
def set_clock(body):
    """Time travel: {offset_seconds} sets, {advance_seconds} adds."""
    offset = runtime.get().clock_offset
    if "advance_seconds" in body:
        offset += float(body["advance_seconds"])
    if "offset_seconds" in body:
        offset = float(body["offset_seconds"])
    now = clock.set_offset(offset)
    return {"offset_seconds": offset, "now": now, "iso": clock.iso(now)}


@bp.post("/api/quotas")
@control
def set_quotas(body):
    """Change daily limits per API name, e.g. {"api_create_preauthcode": 2} (null = unlimited)."""
    quotas = current_app.config["SANDBOX_QUOTAS"]
    for name, limit in body.items():
        if limit is None:
            quotas.pop(name, None)
        else:
            quotas[name] = int(limit)
    return dict(quotas)


PLATFORM_FIELDS = {
    "event_url": ("event_url", "SANDBOX_EVENT_URL"),
    "message_url": ("message_url", "SANDBOX_MESSAGE_URL"),
    "initiating_domain": ("initiating_domain", "SANDBOX_INITIATING_DOMAIN"),
    "permission_set_ids": ("permission_set_ids", "SANDBOX_PERMISSION_SETS"),
}


@bp.post("/api/platform")
@control
def configure_platform(body):
    """Repoint the platform (event_url, message_url, initiating_domain, permission_set_ids,
    ip_whitelist)."""
    from app.sandbox import tokens

    platform = tokens.platform()
    unknown = [key for key in body if key not in PLATFORM_FIELDS and key != "ip_whitelist"]
    if unknown:  # refused before anything changes
        raise ConsentError("unknown_field", f"cannot configure {unknown[0]!r}")
    if "ip_whitelist" in body:
        if not isinstance(body["ip_whitelist"], list | str):
            raise ConsentError("bad_value", "ip_whitelist is a list of addresses")
        current_app.config["SANDBOX_IP_WHITELIST"] = parse_ip_list(body.pop("ip_whitelist"))
    for key, value in body.items():
        column, setting = PLATFORM_FIELDS[key]
        if key == "permission_set_ids":
            value = world.parse_ids(value)
        setattr(platform, column, value)
        current_app.config[setting] = value
    return snapshot.state()["platform"]


@bp.post("/api/flush")
def flush():
    """Wait until every queued push has been delivered (held and delayed ones included)."""
    timeout = float((request.get_json(silent=True) or {}).get("timeout", 30))
    done = runtime.get().pusher.flush(timeout)
    return jsonify({"flushed": done})


@bp.post("/api/reset")
def reset():
    """Reseed the world (optionally {"seed": n}); faults, clock, quotas, URLs back to start."""
    body = request.get_json(silent=True) or {}
    state = runtime.get()
    state.pusher.flush(float(body.get("timeout", 10)))
    with state.lock:
        state.reset()
        current_app.config.update(copy.deepcopy(current_app.extensions["sandbox_baseline"]))
        world.seed_world(body.get("seed"))
    return jsonify({"reset": True})


@bp.post("/api/release-check")
def release_check():
    """Run the release checks ({wait_seconds, group: 1-5|"random"|"all", appids}); report."""
    from app.sandbox import release

    body = request.get_json(silent=True) or {}
    report = release.run(
        wait_seconds=body.get("wait_seconds"), appids=body.get("appids"), group=body.get("group", 1)
    )
    runtime.get().last_release_check = report
    return jsonify(report)


@bp.post("/api/user-message")
def user_message():
    """A user writes to an authorized account: WeChat sends the message or event to the
    platform's message URL (3 attempts, 5 s each) and shows the passive reply; see messages.py."""
    body = request.get_json(silent=True)
    with runtime.get().lock:
        try:
            if not isinstance(body, dict):
                raise ConsentError("bad_value", "the body is a JSON object")
            outgoing, duplicate = messages.prepare(body)
            db.session.commit()
        except ConsentError as error:
            db.session.rollback()
            return jsonify({"error": error.code, "message": error.message}), 400
        except WechatError as error:  # unknown (40013) or unauthorized (61003) account
            db.session.rollback()
            code, message = ACCOUNT_REFUSALS[error.errcode]
            return jsonify({"error": code, "message": message, **error.payload()}), 400
    return jsonify(messages.send(outgoing, duplicate))


ACCOUNT_REFUSALS = {
    40013: ("unknown_account", "no such account"),
    61003: ("not_authorized", "account is not authorized to this platform"),
}


@bp.get("/")
def dashboard():
    """The human dashboard: the same data as /sandbox/api/state, readable."""
    with runtime.get().lock:
        data = snapshot.state(delivery_limit=50)
    return render_template("sandbox/dashboard.html", s=data)
