"""WeChat's component APIs at WeChat's paths, with WeChat's rules and error answers (§3)."""

import secrets
from functools import wraps

from flask import Blueprint, current_app, jsonify, request, url_for
from sqlalchemy import and_, bindparam, insert, select, update

from app.sandbox import clock, faults, grants, pushes, runtime, tokens
from app.sandbox.errors import WechatError
from app.sandbox.models import Account, ApiCall, Authorization, db

bp = Blueprint("wechat_api", __name__)


# Statements every API call runs, built once (see tokens.py).
_CALLS = ApiCall.__table__.c
_TODAY = (_CALLS.name == bindparam("b_name")) & (_CALLS.day == bindparam("b_day"))
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
               and_(_GRANT.account_id == Account.id, _GRANT.status == "active"))
    .where(Account.appid == bindparam("appid"))
)  # fmt: skip


def count_call(name: str, *, quota: bool = False) -> None:
    """Count a call to `name` for today; `quota`: it also spent a unit of the daily quota."""
    day, spent = clock.beijing_day(), int(quota)
    db.session.flush()  # a Core statement: a handler's pending ORM changes go first
    if not db.session.execute(_COUNT, {"b_name": name, "b_day": day, "spent": spent}).rowcount:
        db.session.execute(
            _FIRST_COUNT, {"name": name, "day": day, "calls": 1, "quota_used": spent}
        )


def wechat_api(name: str):
    """Wrap a handler(body) -> dict: count, faults, quota, lock, errors as WeChat answers them."""

    def decorate(handler):
        @wraps(handler)
        def view():
            state, counted = runtime.get(), False
            try:
                faults.apply(name)
                _check_client_ip()
                body = request.get_json(force=True, silent=True)
                if not isinstance(body, dict):
                    raise WechatError(47001)
                with state.lock:
                    try:  # the answer and its count (call + quota) in one transaction
                        result = _within_quota(name, handler, body)
                        db.session.commit()
                        counted = True
                    except Exception:
                        db.session.rollback()
                        raise
            except WechatError as error:
                return jsonify(error.payload())
            except faults.TransportFault as fault:
                with state.lock:  # counted now: a held request must not count into a reset world
                    count_call(name)
                    db.session.commit()
                counted = True
                return faults.transport_response(fault)
            finally:
                if not counted:  # every call counts, failures included
                    with state.lock:
                        count_call(name)
                        db.session.commit()
            pushes.send_outbox()
            return jsonify(result)

        return view

    return decorate


def _check_client_ip() -> None:
    """WeChat checks every component API call against the platform's IP whitelist (61004)."""
    allowed = current_app.config["SANDBOX_IP_WHITELIST"]
    client_ip = request.remote_addr or ""
    if allowed and client_ip not in allowed:
        raise WechatError(61004, f"requestIP: {client_ip}")


def _within_quota(name: str, handler, body: dict) -> dict:
    limit = current_app.config["SANDBOX_QUOTAS"].get(name)
    if limit is not None:
        used = db.session.execute(
            _QUOTA_USED, {"b_name": name, "b_day": clock.beijing_day()}
        ).scalar()
        if (used or 0) >= limit:
            raise WechatError(45009)
    result = handler(body)
    count_call(name, quota=True)
    return result


def _token_arg() -> str | None:
    # The newest docs write access_token=, every SDK writes component_access_token= (§3).
    return request.args.get("component_access_token") or request.args.get("access_token")


def _component(body: dict, field: str = "component_appid") -> None:
    appid = body.get(field)
    if not appid:
        raise WechatError(41002)
    if appid != tokens.platform_appid():
        raise WechatError(61011)


def _authorized_account(body: dict):
    account = grants.find_account(body.get("authorizer_appid"))
    if account is None:
        raise WechatError(40013)
    grant = tokens.active_authorization(account)
    if grant is None:
        raise WechatError(61003)
    return account, grant


def _authorized_grant(body: dict):
    """_authorized_account's checks in one read: (account_id, the live grant's token columns)."""
    appid = body.get("authorizer_appid") or ""
    row = db.session.execute(_ACCOUNT_GRANT, {"appid": appid}).first()
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
def api_component_token(body):
    """Mint a component_access_token from appid, secret and a valid ticket."""
    _component(body)
    secret = body.get("component_appsecret")
    if not secret:
        raise WechatError(41004)
    if not secrets.compare_digest(secret, tokens.platform().secret):
        raise WechatError(40125)
    tokens.check_ticket(body.get("component_verify_ticket"))
    token = tokens.issue_component_token()
    return {"component_access_token": token.value, "expires_in": tokens.TOKEN_TTL}


@bp.post("/cgi-bin/component/api_create_preauthcode")
@wechat_api("api_create_preauthcode")
def api_create_preauthcode(body):
    """Mint a single-use pre_auth_code."""
    tokens.check_component_token(_token_arg())
    _component(body)
    code = tokens.issue_pre_auth_code()
    return {"pre_auth_code": code.value, "expires_in": tokens.PRE_AUTH_TTL}


@bp.post("/cgi-bin/component/api_query_auth")
@wechat_api("api_query_auth")
def api_query_auth(body):
    """Exchange an authorization_code for the grant's tokens and func_info."""
    tokens.check_component_token(_token_arg())
    _component(body)
    grant, token = tokens.exchange_auth_code(body.get("authorization_code"))
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
def api_authorizer_token(body):
    """Refresh an authorizer_access_token with the refresh token."""
    tokens.check_component_token(_token_arg())
    _component(body)
    if not body.get("authorizer_refresh_token"):
        raise WechatError(61023)
    grant = _authorized_grant(body)  # the hot path of every refresh sweep: Core reads only
    if not tokens.refresh_token_matches(grant, body["authorizer_refresh_token"]):
        raise WechatError(61023)
    token = tokens.issue_authorizer_token(grant.account_id, origin=None)
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
def api_get_authorizer_info(body):
    """Account details plus the current refresh token and func_info."""
    tokens.check_component_token(_token_arg())
    _component(body)
    account, grant = _authorized_account(body)
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
def api_get_authorizer_list(body):
    """Page through the platform's authorizers (count at most 500)."""
    tokens.check_component_token(_token_arg())
    _component(body)
    try:
        offset = max(0, int(body.get("offset", 0)))
        count = min(500, max(1, int(body.get("count", 500))))
    except (TypeError, ValueError):
        raise WechatError(47001) from None
    active = select(Authorization).filter_by(status="active").order_by(Authorization.id)
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
