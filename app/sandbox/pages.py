"""WeChat's authorization pages: PC QR page, phone page, security assistant (§4)."""

import secrets
from urllib.parse import urlencode, urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from markupsafe import Markup

from app.sandbox import catalog, grants, i18n, media, platforms, pushes, runtime, tokens
from app.sandbox.errors import ConsentError
from app.sandbox.models import Platform, WechatUser, db

bp = Blueprint(
    "sandbox_pages",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/sandbox/static",
)
LINK_PARAMS = (
    "action",
    "no_scan",
    "component_appid",
    "pre_auth_code",
    "redirect_uri",
    "auth_type",
    "biz_appid",
    "category_id_list",
)


def init_app(app) -> None:
    """Template helpers and the language cookie."""
    app.jinja_env.globals.update(
        t=i18n.t,
        lang=i18n.lang,
        set_name=catalog.name,
        set_description=catalog.description,
        lang_url=_lang_url,
    )

    @app.after_request
    def remember_language(response):
        if request.args.get("lang") in ("zh", "en"):
            response.set_cookie("sandbox_lang", request.args["lang"], samesite="Lax")
        return response


def _lang_url(code: str) -> str:
    args = request.args.to_dict()
    args["lang"] = code
    return f"{request.path}?{urlencode(args)}"


def _link_args() -> dict:
    return {k: request.values[k] for k in LINK_PARAMS if request.values.get(k)}


def _error(message: str, status: int = 400):
    return render_template("sandbox/error.html", message=message), status


def _phone() -> str:
    """This browser's id (in the sandbox's session cookie): the phone that scans a code."""
    if "phone" not in session:
        session["phone"] = secrets.token_urlsafe(16)
    return session["phone"]


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _domain(url: str | None) -> str:
    return urlsplit(url or "").netloc


def _link_platform() -> Platform | None:
    """The platform the link's component_appid names."""
    return platforms.by_appid(request.values.get("component_appid"))


def _check_link(*, scan: bool = False, wechat_user: WechatUser | None = None):
    """Validate the link parameters; return (platform, pre_auth_code credential, None) or
    (None, None, error).

    `scan`: this is the phone page, whose opening burns the code for every other phone (and,
    once a WeChat user is picked, for every other user)."""
    platform = _link_platform()
    if platform is None:
        return None, None, _error(i18n.t("appid_error"))
    redirect_uri = request.values.get("redirect_uri", "")
    relaxed = current_app.config["SANDBOX_RELAX_REFERER"]
    if not relaxed and _domain(redirect_uri) != platform.initiating_domain:
        return None, None, _error(i18n.t("redirect_error"))
    phone, user_id = _phone(), wechat_user.id if wechat_user else None
    try:
        code = tokens.check_pre_auth_code(
            request.values.get("pre_auth_code"),
            platform_id=platform.id,
            wechat_user_id=user_id,
            phone=phone,
        )
    except tokens.PreAuthCodeRefused as refused:
        reason = "code_used" if refused.reason == "used" else "code_error"
        return None, None, _error(i18n.t(reason))
    if scan:
        tokens.scan_pre_auth_code(code, phone=phone, wechat_user_id=user_id)
    # Remember where to send the browser, so the control API's consent can answer it too.
    code.redirect_uri = redirect_uri or code.redirect_uri
    return platform, code, None


@bp.get("/cgi-bin/componentloginpage")
def login_page():
    """PC authorization page: Referer check, then a QR code for the admin's phone."""
    with runtime.get().lock:
        # An unknown component_appid is refused below, after the Referer check.
        checked = _link_platform() or platforms.default()
        domain = checked.initiating_domain
        db.session.rollback()
    referer = _domain(request.headers.get("Referer"))
    if not current_app.config["SANDBOX_RELAX_REFERER"] and referer != domain:
        return _error(i18n.t("referer_error", referer=referer or i18n.t("empty")), 403)
    with runtime.get().lock:
        platform, code, error = _check_link()
        db.session.commit()
    if error:
        return error
    args = {"action": "bindcomponent", "no_scan": "1", **_link_args()}
    mobile_url = url_for(".bind_component", _external=True, **args)
    return render_template(
        "sandbox/login_page.html",
        mobile_url=mobile_url,
        qr=Markup(media.qr_svg(mobile_url)),
        platform=platform,
        platform_name=platforms.display_name(platform),
        expires_in=int((code.expires_at - code.issued_at) / 60),
    )


@bp.route("/wxaopen/safe/bindcomponent", methods=["GET", "POST"])
@bp.route("/safe/bindcomponent", methods=["GET", "POST"], endpoint="bind_component_legacy")
def bind_component():
    """Phone authorization page (opening it is the scan, which burns the code for every other
    phone): pick the WeChat user, the account, the sets; confirm."""
    with runtime.get().lock:
        user = grants.find_user(request.values.get("wechat_user") or "")
        platform, code, error = _check_link(scan=True, wechat_user=user)
        db.session.commit()
    if error:
        return error
    if user is None:
        users = db.session.execute(db.select(WechatUser).order_by(WechatUser.id)).scalars()
        return render_template("sandbox/bind_users.html", users=list(users), args=_link_args())
    auth_type = _int_or_none(request.values.get("auth_type"))
    biz_appid = request.values.get("biz_appid") or None
    appid = biz_appid or request.values.get("account")
    if not appid:
        return _account_list(platform, user, auth_type)
    account = grants.find_account(appid)
    if account is None or account.admin_id != user.id:
        return _error(i18n.t("biz_error"), 403)
    if not platforms.may_authorize(platform, account):
        return _error(i18n.t("unreleased"), 403)
    if request.method == "POST":
        return _confirm(platform, code, user, account, auth_type, biz_appid)
    return _sets_page(platform, user, account)


def _account_list(platform: Platform, user: WechatUser, auth_type: int | None):
    wanted = {1: {"official_account"}, 2: {"mini_program"}}.get(
        auth_type, {"official_account", "mini_program"}
    )
    rows = [
        {
            "account": a,
            "ours": tokens.active_authorization(a, platform.id) is not None,
            "limit": grants.at_provider_limit(a, platform),
            "unreleased": not platforms.may_authorize(platform, a),
        }
        for a in user.accounts
        if a.type in wanted and a.account_status == 1
    ]
    return render_template("sandbox/bind_accounts.html", user=user, rows=rows, args=_link_args())


def _sets_page(platform: Platform, user, account, error: str | None = None, status: int = 200):
    category_ids = [_int_or_none(p) for p in request.values.get("category_id_list", "").split("|")]
    offered = grants.offered_sets(account, platform, [i for i in category_ids if i is not None])
    grant = tokens.active_authorization(account, platform.id)
    checked = set(grant.permission_set_ids) if grant else set(offered)
    held = grants.held_elsewhere(account, platform)
    sets = [
        {
            "id": i,
            "exclusive": catalog.is_exclusive(i),
            "held_by": held.get(i),
            "checked": i in checked and i not in held,
        }
        for i in offered
    ]
    return render_template(
        "sandbox/bind_sets.html",
        user=user,
        account=account,
        sets=sets,
        args=_link_args(),
        error=error,
        limit=grants.at_provider_limit(account, platform),
        platform_name=platforms.display_name(platform),
    ), status


def _confirm(platform, code, user, account, auth_type, biz_appid):
    set_ids = [int(i) for i in request.form.getlist("permission_set_ids") if i.isdigit()]
    with runtime.get().lock:
        try:
            result = grants.consent(
                code.value,
                user.id,
                account.appid,
                set_ids,
                redirect_uri=request.values.get("redirect_uri"),
                auth_type=auth_type,
                biz_appid=biz_appid,
                platform=platform,
            )
            db.session.commit()
        except ConsentError as refused:
            db.session.rollback()
            return _sets_page(platform, user, account, error=refused.message, status=422)
    pushes.send_outbox()
    return redirect(result["redirect_url"], code=303)


@bp.get("/sandbox/assistant/")
def assistant_users():
    """Security assistant: pick whose bindings to manage."""
    users = db.session.execute(db.select(WechatUser).order_by(WechatUser.id)).scalars()
    return render_template("sandbox/bind_users.html", users=list(users), args={}, assistant=True)


@bp.get("/sandbox/assistant/<int:user_id>")
def assistant(user_id):
    """Security assistant: the user's accounts and their grants (one per platform), with update
    and revoke."""
    user = db.session.get(WechatUser, user_id) or abort(404)
    rows = []
    for account in user.accounts:
        held = []
        for grant in tokens.active_authorizations(account):
            platform = grant.platform
            taken = grants.held_elsewhere(account, platform)
            offered = [i for i in grants.offered_sets(account, platform) if i not in taken]
            name = platforms.display_name(platform)
            held.append({"grant": grant, "platform": platform, "name": name, "offered": offered})
        rows.append({"account": account, "grants": held})
    return render_template(
        "sandbox/assistant.html", user=user, rows=rows, done=request.args.get("done")
    )


@bp.post("/sandbox/assistant/<int:user_id>/<appid>")
def assistant_change(user_id, appid):
    """Untick sets (update) or revoke one platform's grant (form field component_appid; absent =
    the default platform), pushing updateauthorized/unauthorized."""
    account = grants.find_account(appid)
    if account is None or account.admin_id != user_id:
        abort(404)
    with runtime.get().lock:
        try:
            platform = platforms.require(request.form.get("component_appid"))
            if request.form.get("action") == "revoke":
                grants.revoke(platform, appid)
            else:
                set_ids = [int(i) for i in request.form.getlist("permission_set_ids")]
                grants.update(platform, appid, set_ids)
            db.session.commit()
        except ConsentError as refused:
            db.session.rollback()
            return _error(refused.message, 422)
    pushes.send_outbox()
    return redirect(url_for(".assistant", user_id=user_id, done=1), code=303)
