"""/api/v1: authorizers, their access tokens from custody, and the component token."""

import json
from functools import wraps
from pathlib import Path

from flask import Blueprint, g, jsonify, request
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from app.current_platform import platform_detail
from app.extensions import csrf, db
from app.models import Authorizer, ComponentCredential, Grant, GrantStatus, Platform
from app.services import audit, clock
from app.services.authorization.authorizers import AuthorizerNotFound
from app.services.custody import apikeys, serve
from app.services.platform import credentials, platforms

bp = Blueprint("api", __name__)
csrf.exempt(bp)
OPENAPI = Path(__file__).with_name("openapi.json")
MAX_PER_PAGE = 200


class ApiError(Exception):
    """An error answered as {"error": {"code", "message"}} with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}
        self.extra = extra


@bp.errorhandler(ApiError)
def _api_error(error: ApiError):
    response = jsonify({"error": {"code": error.code, "message": error.message, **error.extra}})
    return response, error.status, error.headers


@bp.before_request
def authenticate():
    """Every call but the OpenAPI document needs a valid key within its rate limit."""
    if request.endpoint == "api.openapi":
        return
    header = request.headers.get("Authorization", "")
    secret = header[7:].strip() if header.lower().startswith("bearer ") else None
    key = apikeys.authenticate(secret or request.headers.get("X-Api-Key"))
    if key is None:
        raise ApiError(401, "unauthorized", "a valid API key is required",
                       {"WWW-Authenticate": "Bearer"})  # fmt: skip
    allowed, retry_after = apikeys.within_rate_limit(key)
    if not allowed:
        raise ApiError(429, "rate_limited", "rate limit exceeded",
                       {"Retry-After": str(retry_after)})  # fmt: skip
    g.api_key = key


def scope(name: str):
    """Require a scope on the key."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            if not apikeys.has_scope(g.api_key, name):
                raise ApiError(403, "insufficient_scope", f"this key lacks the {name} scope")
            return view(*args, **kwargs)

        return wrapper

    return decorate


def _iso(value):
    return value.isoformat().replace("+00:00", "Z") if value else None


def authorizer_json(authorizer: Authorizer) -> dict:
    grant = authorizer.grant
    return {
        "component_appid": authorizer.component_appid,
        "authorizer_appid": authorizer.appid,
        "merchant_id": authorizer.merchant_id,
        "account_type": authorizer.account_type,
        "status": grant.status.value if grant else "revoked",
        "permission_set_ids": list(grant.set_ids) if grant else [],
        "authorized_at": _iso(grant.authorized_at) if grant else None,
        "updated_at": _iso(grant.updated_at) if grant else None,
        "account": {
            "nick_name": authorizer.nick_name,
            "head_img": authorizer.head_img,
            "principal_name": authorizer.principal_name,
            "user_name": authorizer.user_name,
            "alias": authorizer.alias,
            "service_type_id": authorizer.service_type_id,
            "verify_type_id": authorizer.verify_type_id,
            "qrcode_url": authorizer.qrcode_url,
            "account_status": authorizer.account_status,
        },
    }


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    try:
        value = int(raw) if raw is not None else default
    except ValueError:
        raise ApiError(400, "invalid_parameter", f"{name} must be an integer") from None
    if not low <= value <= high:
        raise ApiError(400, "invalid_parameter", f"{name} must be between {low} and {high}")
    return value


def _platform_param() -> str | None:
    """The `component_appid` parameter (None when absent); 404 when it names no platform."""
    appid = request.args.get("component_appid")
    if appid is not None and platforms.keys(appid) is None:
        raise ApiError(404, "platform_not_found", "no such platform")
    return appid


def _platform_of(appid: str) -> str:
    """The platform of the authorization of `appid` the caller means (409 if ambiguous)."""
    try:
        return serve.platform_of(appid, _platform_param())
    except AuthorizerNotFound:
        raise ApiError(404, "authorizer_not_found", "no such authorizer") from None
    except serve.HeldOnSeveralPlatforms as held:
        raise ApiError(
            409, "ambiguous_platform",
            "this account is authorized to several platforms: add ?component_appid=",
            component_appids=held.component_appids,
        ) from None  # fmt: skip


@bp.get("/authorizers")
@scope("authorizers:read")
def list_authorizers():
    """Authorizers, paged, filterable by component_appid, status, merchant_id, account_type."""
    page = _int_arg("page", 1, 1, 10**6)
    per_page = _int_arg("per_page", 50, 1, MAX_PER_PAGE)
    query = select(Authorizer).join(Grant)
    if component_appid := _platform_param():
        query = query.where(Authorizer.component_appid == component_appid)
    if status := request.args.get("status"):
        if status not in {s.value for s in GrantStatus}:
            raise ApiError(400, "invalid_parameter", "unknown status")
        query = query.where(Grant.status == GrantStatus(status))
    if request.args.get("merchant_id"):
        query = query.where(Authorizer.merchant_id == _int_arg("merchant_id", 0, 1, 2**31))
    if account_type := request.args.get("account_type"):
        query = query.where(Authorizer.account_type == account_type)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    rows = db.session.scalars(
        query.order_by(Authorizer.id).offset((page - 1) * per_page).limit(per_page)
    )
    items = [authorizer_json(a) for a in rows]
    return jsonify({"items": items, "page": page, "per_page": per_page, "total": total})


def _authorizer(appid: str) -> Authorizer:
    authorizer = db.session.scalar(
        select(Authorizer)
        .where(Authorizer.component_appid == _platform_of(appid), Authorizer.appid == appid)
        .options(joinedload(Authorizer.grant), joinedload(Authorizer.token))
    )
    if authorizer is None or authorizer.grant is None:
        raise ApiError(404, "authorizer_not_found", "no such authorizer")
    return authorizer


@bp.get("/authorizers/<appid>")
@scope("authorizers:read")
def get_authorizer(appid: str):
    """One authorizer: status, account info, granted permission sets."""
    return jsonify(authorizer_json(_authorizer(appid)))


@bp.get("/authorizers/<appid>/access-token")
@scope("tokens:read")
def authorizer_access_token(appid: str):
    """A valid authorizer_access_token from custody (refreshed under the lease if needed)."""
    try:
        served = serve.access_token(appid, component_appid=_platform_of(appid))
    except AuthorizerNotFound:
        raise ApiError(404, "authorizer_not_found", "no such authorizer") from None
    except serve.NeedsReauthorization:
        raise ApiError(409, "needs_reauthorization", "the merchant must re-authorize") from None
    except serve.TokenUnavailable:
        raise ApiError(503, "token_unavailable", "no token available right now",
                       {"Retry-After": "5"}) from None  # fmt: skip
    audit.record(
        "api.authorizer_token_read", actor=f"api_key:{g.api_key.name}",
        merchant_id=served.merchant_id, target_type="authorizer", target_id=served.authorizer_id,
        api_key_id=g.api_key.id,
    )  # fmt: skip
    db.session.commit()
    return jsonify({
        "component_appid": served.component_appid,
        "authorizer_appid": appid,
        "access_token": served.access_token,
        "expires_at": _iso(served.expires_at),
        "expires_in": max(0, int((served.expires_at - clock.now()).total_seconds())),
    })  # fmt: skip


@bp.get("/platforms")
def list_platforms():
    """The third-party platforms this deployment serves (any valid key; never a secret)."""
    rows = platforms.all_platforms()
    return jsonify({"items": [platform_json(row) for row in rows]})


def platform_json(row: Platform) -> dict:
    return {
        "component_appid": row.component_appid,
        "name": row.name,
        "purpose": row.purpose,
        "status": row.status,
        "release_state": row.release_state,
        "released_at": _iso(row.released_at),
        "is_default": platforms.is_default(row.component_appid),
    }


@bp.get("/component/access-token")
@scope("component_token:read")
def component_access_token():
    """The default platform's component_access_token from custody."""
    return _component_token_json()


@bp.get("/platforms/<component_appid>/component/access-token")
@scope("component_token:read")
def platform_component_access_token(component_appid: str):
    """A platform's component_access_token from custody."""
    if not platforms.known(component_appid):
        raise ApiError(404, "platform_not_found", "no such platform")
    with platforms.using(component_appid):
        return _component_token_json()


def _component_token_json():
    try:
        token = credentials.component_access_token()
    except credentials.CredentialsUnavailable:
        raise ApiError(503, "token_unavailable", "no component token available right now",
                       {"Retry-After": "5"}) from None  # fmt: skip
    expires_at = db.session.scalar(
        select(ComponentCredential.expires_at).where(
            ComponentCredential.token_hash == credentials.token_hash(token)
        )
    )
    appid = platforms.current_appid()
    audit.record(
        "api.component_token_read", actor=f"api_key:{g.api_key.name}", api_key_id=g.api_key.id,
        **platform_detail(appid),
    )  # fmt: skip
    db.session.commit()
    expires_in = int((expires_at - clock.now()).total_seconds()) if expires_at else 0
    return jsonify({
        "component_appid": appid,
        "component_access_token": token,
        "expires_at": _iso(expires_at),
        "expires_in": expires_in,
    })  # fmt: skip


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 description of this API."""
    return jsonify(json.loads(OPENAPI.read_text(encoding="utf-8")))
