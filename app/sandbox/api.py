"""WeChat's component APIs at WeChat's paths, with WeChat's rules and error answers (§3).

Each call acts on one platform: the one its token belongs to, else the one its body's
`component_appid` names (else the default one, whose checks then refuse the call). That
platform's faults, IP whitelist, quotas and call counts apply."""

import secrets
from dataclasses import dataclass
from functools import wraps

from flask import Blueprint, current_app, jsonify, request, url_for
from sqlalchemy import and_, bindparam, insert, select, update

from app.sandbox import clock, faults, grants, pushes, runtime, tokens
from app.sandbox.errors import WechatError
from app.sandbox.models import FIRST_PLATFORM_ID, Account, ApiCall, Authorization, Platform, db

bp = Blueprint("wechat_api", __name__)


# Statements every API call runs, built once (see tokens.py).
_CALLS = ApiCall.__table__.c
_TODAY = (
    (_CALLS.name == bindparam("b_name"))
    & (_CALLS.day == bindparam("b_day"))
    & (_CALLS.platform_id == bindparam("b_platform_id"))
)
_QUOTA_USED = select(_CALLS.quota_used).where(_TODAY)
_COUNT = (
    update(ApiCall.__table__)
    .where(_TODAY)
    .values(calls=_CALLS.calls + 1, quota_used=_CALLS.quota_used + bindparam("spent"))
)
_FIRST_COUNT = insert(ApiCall.__table__)
_GRANT = Authorization.__table__.c
_ACCOUNT_GRANT = (
    select(Account.id.label("account_id"), _GRANT.id, _GRANT.refresh_token,
           _GRANT.previous_refresh_token, _GRANT.previous_refresh_until)
    .outerjoin(Authorization.__table__,
               and_(_GRANT.account_id == Account.id, _GRANT.status == "active",
                    _GRANT.platform_id == bindparam("platform_id")))
    .where(Account.appid == bindparam("appid"))
)  # fmt: skip
_PLATFORM_BY_APPID = select(Platform.id).where(Platform.appid == bindparam("appid"))
_PLATFORM_REF = select(Platform.id, Platform.appid, Platform.ip_whitelist).where(
    Platform.id == bindparam("platform_id")
)


@dataclass(frozen=True)
class Caller:
    """Which platform a call acts on, read before its faults and whitelist apply."""

    platform_id: int
    component_appid: str
    ip_whitelist: tuple[str, ...]


def count_call(name: str, platform_id: int, *, quota: bool = False) -> None:
    """Count a call to `name` for today on a platform; `quota`: it also spent a unit of the
    platform's daily quota."""
    day, spent = clock.beijing_day(), int(quota)
    db.session.flush()  # a Core statement: a handler's pending ORM changes go first
    keys = {"b_name": name, "b_day": day, "b_platform_id": platform_id}
    if not db.session.execute(_COUNT, {**keys, "spent": spent}).rowcount:
        db.session.execute(
            _FIRST_COUNT,
            {"name": name, "day": day, "calls": 1, "quota_used": spent, "platform_id": platform_id},
        )


def wechat_api(name: str):
    """Wrap a handler(body, platform) -> dict: the calling platform, count, faults, quota, lock,
    errors as WeChat answers them."""

    def decorate(handler):
        @wraps(handler)
        def view():
            state, counted = runtime.get(), False
            body = request.get_json(force=True, silent=True)
            with state.lock:
                caller = _caller(body)
                db.session.rollback()  # no transaction stays open while a fault sleeps
            try:
                faults.apply(name, caller.component_appid)
                _check_client_ip(caller)
                if not isinstance(body, dict):
                    raise WechatError(47001)
                with state.lock:
                    try:  # the answer and its count (call + quota) in one transaction
                        platform = db.session.get(Platform, caller.platform_id)
                        result = _within_quota(name, handler, body, platform)
                        db.session.commit()
                        counted = True
                    except Exception:
                        db.session.rollback()
                        raise
            except WechatError as error:
                return jsonify(error.payload())
            except faults.TransportFault as fault:
                with state.lock:  # counted now: a held request must not count into a reset world
                    count_call(name, caller.platform_id)
                    db.session.commit()
                counted = True
                return faults.transport_response(fault)
            finally:
                if not counted:  # every call counts, failures included
                    with state.lock:
                        count_call(name, caller.platform_id)
                        db.session.commit()
            pushes.send_outbox()
            return jsonify(result)

        return view

    return decorate


def _caller(body) -> Caller:
    """The platform of the call's token, else of its body's component_appid, else the default."""
    platform_id = None
    token = _token_arg()
    if token:
        platform_id = tokens.platform_of_credential(token)
    appid = body.get("component_appid") if isinstance(body, dict) else None
    if platform_id is None and isinstance(appid, str):
        platform_id = db.session.execute(_PLATFORM_BY_APPID, {"appid": appid}).scalar()
    if platform_id is None:
        platform_id = db.session.execute(FIRST_PLATFORM_ID).scalar_one()
    row = db.session.execute(_PLATFORM_REF, {"platform_id": platform_id}).one()
    return Caller(row.id, row.appid, tuple(row.ip_whitelist or ()))


def _check_client_ip(caller: Caller) -> None:
    """WeChat checks every component API call against the platform's IP whitelist (61004)."""
    client_ip = request.remote_addr or ""
    if caller.ip_whitelist and client_ip not in caller.ip_whitelist:
        raise WechatError(61004, f"requestIP: {client_ip}")


def _within_quota(name: str, handler, body: dict, platform: Platform) -> dict:
    limit = (platform.quotas or {}).get(name)
    if limit is not None:
        used = db.session.execute(
            _QUOTA_USED,
            {"b_name": name, "b_day": clock.beijing_day(), "b_platform_id": platform.id},
        ).scalar()
        if (used or 0) >= limit:
            raise WechatError(45009)
    result = handler(body, platform)
    count_call(name, platform.id, quota=True)
    return result


def _token_arg() -> str | None:
    # The newest docs write access_token=, every SDK writes component_access_token= (§3).
    return request.args.get("component_access_token") or request.args.get("access_token")


def _component(body: dict, platform: Platform, field: str = "component_appid") -> None:
    appid = body.get(field)
    if not appid:
        raise WechatError(41002)
    if appid != platform.appid:
        raise WechatError(61011)


def _authorized_account(body: dict, platform: Platform):
    account = grants.find_account(body.get("authorizer_appid"))
    if account is None:
        raise WechatError(40013)
    grant = tokens.active_authorization(account, platform.id)
    if grant is None:
        raise WechatError(61003)
    return account, grant


def _authorized_grant(body: dict, platform: Platform):
    """_authorized_account's checks in one read: (account_id, the live grant's token columns)."""
    appid = body.get("authorizer_appid") or ""
    row = db.session.execute(_ACCOUNT_GRANT, {"appid": appid, "platform_id": platform.id}).first()
    if row is None:
        raise WechatError(40013)
    if row.id is None:
        raise WechatError(61003)
    return row


def func_info(set_ids: list[int]) -> list[dict]:
    """func_info as WeChat shapes it (confirm_info on some entries, see §5.4)."""
    info = []
    for set_id in set_ids:
        entry: dict = {"funcscope_category": {"id": set_id}}
        if set_id in (4, 18, 24, 25):
            entry["confirm_info"] = {"need_confirm": 0, "already_confirm": 0, "can_confirm": 0}
        info.append(entry)
    return info


@bp.post("/cgi-bin/component/api_component_token")
@wechat_api("api_component_token")
def api_component_token(body, platform):
    """Mint a component_access_token from appid, secret and a valid ticket of that platform."""
    _component(body, platform)
    secret = body.get("component_appsecret")
    if not secret:
        raise WechatError(41004)
    if not isinstance(secret, str) or not secrets.compare_digest(secret, platform.secret):
        raise WechatError(40125)
    tokens.check_ticket(body.get("component_verify_ticket"), platform.id)
    token = tokens.issue_component_token(platform.id)
    return {"component_access_token": token.value, "expires_in": tokens.TOKEN_TTL}


@bp.post("/cgi-bin/component/api_create_preauthcode")
@wechat_api("api_create_preauthcode")
def api_create_preauthcode(body, platform):
    """Mint a single-use pre_auth_code."""
    tokens.check_component_token(_token_arg(), platform.id)
    _component(body, platform)
    code = tokens.issue_pre_auth_code(platform.id)
    return {"pre_auth_code": code.value, "expires_in": tokens.PRE_AUTH_TTL}


@bp.post("/cgi-bin/component/api_query_auth")
@wechat_api("api_query_auth")
def api_query_auth(body, platform):
    """Exchange an authorization_code for the grant's tokens and func_info."""
    tokens.check_component_token(_token_arg(), platform.id)
    _component(body, platform)
    grant, token = tokens.exchange_auth_code(body.get("authorization_code"), platform.id)
    return {
        "authorization_info": {
            "authorizer_appid": grant.account.appid,
            "authorizer_access_token": token,
            "expires_in": tokens.TOKEN_TTL,
            "authorizer_refresh_token": grant.refresh_token,
            "func_info": func_info(grant.permission_set_ids),
        }
    }


@bp.post("/cgi-bin/component/api_authorizer_token")
@wechat_api("api_authorizer_token")
def api_authorizer_token(body, platform):
    """Refresh an authorizer_access_token with the refresh token of the platform's grant."""
    tokens.check_component_token(_token_arg(), platform.id)
    _component(body, platform)
    if not body.get("authorizer_refresh_token"):
        raise WechatError(61023)
    grant = _authorized_grant(body, platform)  # the hot path of refresh sweeps: Core reads only
    if not tokens.refresh_token_matches(grant, body["authorizer_refresh_token"]):
        raise WechatError(61023)
    token = tokens.issue_authorizer_token(platform.id, grant.account_id, origin=None)
    return {
        "authorizer_access_token": token,
        "expires_in": tokens.TOKEN_TTL,
        "authorizer_refresh_token": grant.refresh_token,
    }


def _public_url(endpoint: str, **values) -> str:
    base = current_app.config["SANDBOX_PUBLIC_URL"]
    if base:
        return base.rstrip("/") + url_for(endpoint, **values)
    return url_for(endpoint, _external=True, **values)


def authorizer_info(account) -> dict:
    """The authorizer_info object of api_get_authorizer_info (§3.5)."""
    info = {
        "nick_name": account.nick_name,
        "head_img": _public_url("sandbox_media.avatar", appid=account.appid),
        "service_type_info": {"id": account.service_type},
        "verify_type_info": {"id": account.verify_type},
        "user_name": account.user_name,
        "alias": account.alias,
        "qrcode_url": _public_url("sandbox_media.account_qr", appid=account.appid),
        "business_info": {
            "open_pay": 0,
            "open_shake": 0,
            "open_scan": 0,
            "open_card": 0,
            "open_store": 0,
        },
        "idc": 1,
        "principal_name": account.principal_name,
        "signature": account.signature,
        "register_type": account.register_type,
        "account_status": account.account_status,
        "basic_config": {"is_phone_configured": True, "is_email_configured": True},
    }
    if account.type == "mini_program":
        info["MiniProgramInfo"] = {
            "network": {
                key: []
                for key in (
                    "RequestDomain",
                    "WsRequestDomain",
                    "UploadDomain",
                    "DownloadDomain",
                    "BizDomain",
                    "UDPDomain",
                    "TCPDomain",
                )
            },
            "categories": account.categories,
            "visit_status": 0,
        }
    return info


@bp.post("/cgi-bin/component/api_get_authorizer_info")
@wechat_api("api_get_authorizer_info")
def api_get_authorizer_info(body, platform):
    """Account details plus the current refresh token and func_info of the platform's grant."""
    tokens.check_component_token(_token_arg(), platform.id)
    _component(body, platform)
    account, grant = _authorized_account(body, platform)
    return {
        "authorizer_info": authorizer_info(account),
        "authorization_info": {
            "authorizer_appid": account.appid,
            "authorizer_refresh_token": grant.refresh_token,
            "func_info": func_info(grant.permission_set_ids),
        },
    }


@bp.post("/cgi-bin/component/api_get_authorizer_list")
@wechat_api("api_get_authorizer_list")
def api_get_authorizer_list(body, platform):
    """Page through the platform's authorizers (count at most 500)."""
    tokens.check_component_token(_token_arg(), platform.id)
    _component(body, platform)
    try:
        offset = max(0, int(body.get("offset", 0)))
        count = min(500, max(1, int(body.get("count", 500))))
    except (TypeError, ValueError):
        raise WechatError(47001) from None
    active = (
        select(Authorization)
        .filter_by(platform_id=platform.id, status="active")
        .order_by(Authorization.id)
    )
    rows = list(db.session.execute(active).scalars())
    return {
        "total_count": len(rows),
        "list": [
            {
                "authorizer_appid": g.account.appid,
                # Empty until the platform exchanged a code for this grant (reference §3.6).
                "refresh_token": g.refresh_token if g.exchanged else "",
                "auth_time": int(g.authorized_at),
            }
            for g in rows[offset : offset + count]
        ],
    }
