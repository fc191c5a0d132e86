"""The remaining WeChat APIs: options, ticket restart, quotas, customer-service messages."""

import secrets

from flask import Blueprint, current_app
from sqlalchemy import select

from app.sandbox import clock, grants, runtime, tokens
from app.sandbox.api import _authorized_account, _component, _token_arg, wechat_api
from app.sandbox.errors import WechatError
from app.sandbox.models import ApiCall, CustomMessage, db

bp = Blueprint("wechat_api_extra", __name__)
OPTIONS = {
    "location_report": {"0", "1", "2"},
    "voice_recognize": {"0", "1"},
    "customer_service": {"0", "1"},
}
# The set an authorizer must have granted before the platform may send customer-service messages.
CUSTOM_SEND_SET = {"official_account": 1, "mini_program": 19}


def _option_account(body: dict, platform):
    """The account of an option call: by authorizer token, else component token + appid."""
    token = _token_arg()
    try:
        credential = tokens.check_authorizer_token(token)
        account = credential.account
        grant = tokens.active_authorization(account, credential.platform_id)
        if grant is None:
            raise WechatError(61003)
    except WechatError as error:
        if error.errcode != 40001:
            raise
        tokens.check_component_token(token, platform.id)
        account, grant = _authorized_account(body, platform)
    if account.type != "official_account":
        raise WechatError(61007)  # options exist for Official Accounts only (§3.7)
    name = body.get("option_name")
    if name not in OPTIONS:
        raise WechatError(61013)
    return account, name


def _get_option(body: dict, platform, *, legacy: bool) -> dict:
    if legacy:
        _component(body, platform)
    account, name = _option_account(body, platform)
    result = {"option_name": name, "option_value": (account.options or {}).get(name, "0")}
    return (
        {"authorizer_appid": account.appid, **result}
        if legacy
        else {"errcode": 0, "errmsg": "ok", **result}
    )


def _set_option(body: dict, platform, *, legacy: bool) -> dict:
    if legacy:
        _component(body, platform)
    account, name = _option_account(body, platform)
    value = str(body.get("option_value", ""))
    if value not in OPTIONS[name]:
        raise WechatError(61013)
    account.options = {**(account.options or {}), name: value}
    return {"errcode": 0, "errmsg": "ok"}


@bp.post("/cgi-bin/component/api_get_authorizer_option")
@wechat_api("api_get_authorizer_option")
def api_get_authorizer_option(body, platform):
    """Legacy option read (component token)."""
    return _get_option(body, platform, legacy=True)


@bp.post("/cgi-bin/component/api_set_authorizer_option")
@wechat_api("api_set_authorizer_option")
def api_set_authorizer_option(body, platform):
    """Legacy option write (component token)."""
    return _set_option(body, platform, legacy=True)


@bp.post("/cgi-bin/component/get_authorizer_option")
@wechat_api("get_authorizer_option")
def get_authorizer_option(body, platform):
    """New option read (authorizer token, or component token with authorizer_appid)."""
    return _get_option(body, platform, legacy=False)


@bp.post("/cgi-bin/component/set_authorizer_option")
@wechat_api("set_authorizer_option")
def set_authorizer_option(body, platform):
    """New option write (authorizer token, or component token with authorizer_appid)."""
    return _set_option(body, platform, legacy=False)


@bp.post("/cgi-bin/component/api_start_push_ticket")
@wechat_api("api_start_push_ticket")
def api_start_push_ticket(body, platform):
    """Restart the platform's ticket pushing and push one now."""
    if body.get("component_appid") != platform.appid:
        raise WechatError(40013)
    secret = body.get("component_secret") or ""
    if not isinstance(secret, str) or not secrets.compare_digest(secret, platform.secret):
        raise WechatError(40125)
    faults = runtime.get().pushes_of(platform.appid)
    was_running = platform.ticket_push_running and not faults.get("pause_tickets")
    platform.ticket_push_running = True
    faults.pop("pause_tickets", None)
    grants.push_ticket(platform)
    return {"errcode": 0, "errmsg": "in a normal state" if was_running else "ok"}


def _clear_quota(platform) -> dict:
    month = clock.beijing_day()[:7]
    used = (platform.quota_clears or {}).get(month, 0)
    if used >= current_app.config["SANDBOX_CLEAR_QUOTA_MONTHLY"]:
        raise WechatError(48006)
    platform.quota_clears = {**(platform.quota_clears or {}), month: used + 1}
    today = select(ApiCall).filter_by(platform_id=platform.id, day=clock.beijing_day())
    rows = db.session.execute(today).scalars()
    for row in rows:
        row.quota_used = 0
    return {"errcode": 0, "errmsg": "ok"}


@bp.post("/cgi-bin/clear_quota")
@wechat_api("clear_quota")
def clear_quota(body, platform):
    """Reset the platform's quotas for today with a component (or authorizer) token; 10 per
    month."""
    token = _token_arg()
    try:
        owner = tokens.check_authorizer_token(token).account.appid
    except WechatError:
        tokens.check_component_token(token, platform.id)
        owner = platform.appid
    if body.get("appid") != owner:
        raise WechatError(40013)
    return _clear_quota(platform)


@bp.post("/cgi-bin/component/clear_quota")
@wechat_api("component/clear_quota")
def component_clear_quota(body, platform):
    """Older SDKs' quota reset with component_access_token and component_appid."""
    tokens.check_component_token(_token_arg(), platform.id)
    _component(body, platform)
    return _clear_quota(platform)


@bp.post("/cgi-bin/component/clear_quota/v2")
@wechat_api("clear_quota/v2")
def clear_quota_v2(body, platform):
    """Quota reset without a token (component_appid + appsecret)."""
    _component(body, platform)
    if not body.get("appsecret"):
        raise WechatError(41004)
    if not isinstance(body["appsecret"], str) or not secrets.compare_digest(
        body["appsecret"], platform.secret
    ):
        raise WechatError(40125)
    if body.get("appid") and grants.find_account(body["appid"]) is None:
        raise WechatError(40013)
    return _clear_quota(platform)


@bp.post("/cgi-bin/openapi/quota/get")
@wechat_api("openapi/quota/get")
def quota_get(body, platform):
    """The platform's daily limit, used and remaining calls of one API path."""
    tokens.check_component_token(_token_arg(), platform.id)
    path = str(body.get("cgi_path") or "")
    name = path.removeprefix("/cgi-bin/component/").removeprefix("/cgi-bin/")
    limit = (platform.quotas or {}).get(name)
    if limit is None:
        raise WechatError(47001)
    row = db.session.execute(
        select(ApiCall).filter_by(platform_id=platform.id, name=name, day=clock.beijing_day())
    ).scalar_one_or_none()
    used = row.quota_used if row else 0
    return {
        "errcode": 0,
        "errmsg": "ok",
        "quota": {"daily_limit": limit, "used": used, "remain": max(0, limit - used)},
    }


@bp.post("/cgi-bin/message/custom/send")
@wechat_api("message/custom/send")
def custom_send(body, platform):
    """Send a customer-service message as an authorizer (recorded for the release checks)."""
    credential = tokens.check_authorizer_token(_token_arg())
    account = credential.account
    grant = tokens.active_authorization(account, credential.platform_id)
    if grant is None:
        raise WechatError(61003)
    if CUSTOM_SEND_SET[account.type] not in grant.permission_set_ids:
        raise WechatError(61007)
    msgtype = body.get("msgtype")
    if not body.get("touser") or not msgtype:
        raise WechatError(47001)
    content = (body.get(msgtype) or {}).get("content") if msgtype == "text" else None
    db.session.add(
        CustomMessage(
            platform_id=credential.platform_id,
            authorizer_appid=account.appid,
            touser=body["touser"],
            msgtype=msgtype,
            content=content,
            token_origin=credential.origin,
            at=clock.now(),
        )
    )
    return {"errcode": 0, "errmsg": "ok"}
