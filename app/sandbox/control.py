"""The control API (JSON, for tests and the demo) and the human dashboard at /sandbox/."""

import copy
from functools import wraps

from flask import Blueprint, current_app, jsonify, render_template, request

from app.sandbox import (
    clock,
    faults,
    grants,
    messages,
    platforms,
    pushes,
    runtime,
    snapshot,
    world,
)
from app.sandbox.errors import ConsentError, WechatError
from app.sandbox.models import Platform, db

bp = Blueprint("sandbox_control", __name__, url_prefix="/sandbox")


def control(view):
    """Run a control action under the world lock; ConsentError becomes a 400 JSON answer. A view
    returns its answer, or (answer, HTTP status)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        body = request.get_json(silent=True)
        with runtime.get().lock:
            try:
                if body is None:
                    body = {}
                if not isinstance(body, dict):
                    raise ConsentError("bad_value", "the body is a JSON object")
                result = view(body, *args, **kwargs)
                db.session.commit()
            except ConsentError as error:
                db.session.rollback()
                return jsonify(error.payload()), 400
            except Exception:
                db.session.rollback()
                raise
        pushes.send_outbox()
        result, status = result if isinstance(result, tuple) else (result, 200)
        return jsonify(result), status

    return wrapper


def _platform(body: dict):
    """The platform a control call acts on: `component_appid` (body or query; absent = the
    default platform). Removed from the body, so views see only their own fields."""
    appid = body.pop("component_appid", None) or request.args.get("component_appid")
    return platforms.require(appid)


@bp.get("/api/state")
def state():
    """Everything (?component_appid= picks the platform the state is seen from)."""
    with runtime.get().lock:
        try:
            platform = _platform({})
        except ConsentError as error:
            return jsonify(error.payload()), 400
        return jsonify(snapshot.state(platform))


@bp.post("/api/platforms")
@control
def add_platform(body):
    """Register another platform (its own credentials, URLs, sets, tickets, release state)."""
    platform = platforms.create(body)
    if float(current_app.config["SANDBOX_TICKET_INTERVAL"]) > 0:
        grants.push_ticket(platform)  # scheduled pushes are on: the first one right away
    return platforms.platform_json(platform), 201


@bp.post("/api/platforms/<appid>/release")
@control
def release_platform(body, appid):
    """Set a platform's release state ({state: released|testing}) and/or its authorization
    test list ({test_accounts: [appid, …]})."""
    platform = platforms.by_appid(appid)
    if platform is None:
        raise ConsentError("unknown_platform", f"no platform with component_appid {appid!r}")
    return platforms.platform_json(platforms.set_release(platform, body))


@bp.post("/api/consent")
@control
def consent(body):
    """Do the phone flow for a pre_auth_code; return the redirect the browser would follow.
    The code names its platform; `component_appid`, when given, must be that one."""
    appid = body.get("component_appid")
    return grants.consent(
        body.get("pre_auth_code", ""),
        body.get("wechat_user"),
        body.get("authorizer_appid"),
        _set_ids(body),
        redirect_uri=body.get("redirect_uri"),
        platform=platforms.require(appid) if appid else None,
    )


def _set_ids(body: dict) -> list[int]:
    try:
        return [int(i) for i in body.get("permission_set_ids") or []]
    except (TypeError, ValueError):
        raise ConsentError("bad_value", "permission_set_ids is a list of set ids") from None


@bp.post("/api/revoke")
@control
def revoke(body):
    """The merchant revokes the account's grant to the platform (pushes unauthorized)."""
    return grants.revoke(_platform(body), body.get("authorizer_appid"))


@bp.post("/api/update")
@control
def update(body):
    """The merchant changes the granted sets (pushes updateauthorized when they change)."""
    return grants.update(_platform(body), body.get("authorizer_appid"), _set_ids(body))


@bp.post("/api/push-ticket")
@control
def push_ticket(body):
    """Mint and push a component_verify_ticket to the platform now; returns its value."""
    return {"ticket": grants.push_ticket(_platform(body))}


@bp.get("/api/faults")
def get_faults():
    """The platform's faults in force."""
    with runtime.get().lock:
        try:
            platform = _platform({})
        except ConsentError as error:
            return jsonify(error.payload()), 400
        return jsonify(faults.snapshot(platform.appid))


@bp.post("/api/faults")
@control
def set_faults(body):
    """Switch a platform's faults on or off (see the README)."""
    return faults.configure(_platform(body), body)


@bp.post("/api/clock")
@control
def set_clock(body):
    """Time travel (the world's one clock): {offset_seconds} sets, {advance_seconds} adds."""
    _platform(body)  # accepted like everywhere; the clock is the whole world's
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
    """Change a platform's daily limits per API name, e.g. {"api_create_preauthcode": 2}
    (null = unlimited)."""
    platform = _platform(body)
    quotas = dict(platform.quotas or {})
    for name, limit in body.items():
        if limit is None:
            quotas.pop(name, None)
        else:
            try:
                quotas[name] = int(limit)
            except (TypeError, ValueError):
                raise ConsentError("bad_value", f"the limit of {name!r} is a number") from None
    platform.quotas = quotas
    return quotas


@bp.post("/api/platform")
@control
def configure_platform(body):
    """Repoint a platform (event_url, message_url, initiating_domain, permission_set_ids,
    ip_whitelist, name, secret, token, encoding_aes_key)."""
    platform = platforms.configure(_platform(body), body)
    return snapshot.state(platform)["platform"]


@bp.post("/api/flush")
def flush():
    """Wait until every queued push has been delivered (held and delayed ones included)."""
    timeout = float((request.get_json(silent=True) or {}).get("timeout", 30))
    done = runtime.get().pusher.flush(timeout)
    return jsonify({"flushed": done})


@bp.post("/api/reset")
def reset():
    """Reseed the world (optionally {"seed": n}): one platform again, from the configuration;
    faults, clock, quotas, URLs back to start."""
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
    """Run a platform's release checks ({component_appid, wait_seconds, group:
    1-5|"random"|"all", appids, publish}); report. `publish`: a pass releases the platform."""
    from app.sandbox import release

    body = request.get_json(silent=True)
    body = body if isinstance(body, dict) else {}
    with runtime.get().lock:
        try:
            platform = _platform(body)
        except ConsentError as error:
            return jsonify(error.payload()), 400
        platform_id, appid = platform.id, platform.appid
        db.session.rollback()
    report = release.run(
        platform_id,
        wait_seconds=body.get("wait_seconds"),
        appids=body.get("appids"),
        group=body.get("group", 1),
    )
    if body.get("publish"):
        with runtime.get().lock:
            if report["passed"]:
                platforms.publish(db.session.get(Platform, platform_id))
                db.session.commit()
        report["published"] = report["passed"]
    runtime.get().last_release_check[appid] = report
    return jsonify(report)


@bp.post("/api/user-message")
def user_message():
    """A user writes to an account authorized to the platform: WeChat sends the message or event
    to the platform's message URL (3 attempts, 5 s each) and shows the passive reply; see
    messages.py."""
    body = request.get_json(silent=True)
    with runtime.get().lock:
        try:
            if not isinstance(body, dict):
                raise ConsentError("bad_value", "the body is a JSON object")
            outgoing, duplicate = messages.prepare(_platform(body), body)
            db.session.commit()
        except ConsentError as error:
            db.session.rollback()
            return jsonify(error.payload()), 400
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
    """The human dashboard: the same data as /sandbox/api/state, readable
    (?component_appid= picks the platform whose pushes and calls are shown)."""
    with runtime.get().lock:
        platform = platforms.by_appid(request.args.get("component_appid")) or platforms.default()
        data = snapshot.state(platform, delivery_limit=50)
        grants_all = snapshot.all_authorizations()
    return render_template("sandbox/dashboard.html", s=data, all_grants=grants_all)
