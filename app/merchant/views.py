"""Merchant self-service pages: accounts, the connect wizard, update, revoke, delete."""

import secrets

from flask import Blueprint, abort, flash, make_response, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from app.auth.access import merchant_admin_only, refuse_viewer_changes, require_merchant_admin
from app.extensions import htmx
from app.htmx import is_partial_request, render
from app.i18n import locale_code
from app.merchant import forms, queries
from app.merchant import team as team_views
from app.merchant.qr import qr_svg
from app.services.authorization import authorizers, consent, purge, sessions
from app.services.platform import platforms

bp = Blueprint("merchant", __name__)
bp.before_request(require_merchant_admin)
bp.before_request(refuse_viewer_changes)
bp.register_blueprint(team_views.bp, url_prefix="/team")


@bp.app_template_global()
def can_manage_merchant() -> bool:
    """Whether the signed-in user may change their merchant's accounts (viewers may not)."""
    return bool(getattr(current_user, "is_merchant_admin", False))


@bp.context_processor
def merchant_helpers():
    locale = locale_code()
    names: dict[str, str] | None = None

    def platform_of(component_appid: str) -> str | None:
        """The platform's name when the deployment has several (read once per page), else None."""
        nonlocal names
        if names is None:
            names = platforms.names()
        return names.get(component_appid)

    return {
        "set_rows": lambda ids: queries.set_rows(ids, locale),
        "badge_of": authorizers.grant_badge,
        "required_of": queries.required_of,
        "missing_of": queries.missing_required,
        "pending_of": queries.pending_session,
        "platform_of": platform_of,
        "testing_notice": platforms.shows_testing_notice,
    }


def _merchant_id() -> int:
    return current_user.merchant_id


def see_other(url: str):
    """After a successful POST: 303 for browsers, HX-Location for htmx."""
    if htmx:
        response = make_response("", 204)
        response.headers["HX-Location"] = url
        return response
    return redirect(url, code=303)


# --- my accounts --------------------------------------------------------------------------------


@bp.get("/")
def accounts():
    """My accounts: what is connected to the provider, and how to connect more."""
    return render(
        "merchant/accounts.html",
        accounts=authorizers.merchant_authorizers(_merchant_id()),
        open_sessions=queries.open_sessions(_merchant_id()),
        past=queries.past_authorizations(_merchant_id()),
        form=forms.ConfirmForm(),
    )


@bp.get("/accounts/<int:account_id>")
def account(account_id: int):
    """One account: profile, permissions, history and connection health."""
    item, tombstone = queries.account_or_tombstone(_merchant_id(), account_id)
    if tombstone is not None:  # revoked or deleted since: say so instead of a 404
        url = url_for("merchant.revoke", account_id=account_id)
        if htmx:
            response = make_response("", 200)
            response.headers["HX-Redirect"] = url
            return response
        return redirect(url, code=303)
    return render(
        "merchant/account.html",
        fragment="account_body",
        account=item,
        timeline=queries.timeline(item),
        health=queries.health(item),
        form=forms.ConfirmForm(),
    )


@bp.post("/accounts/<int:account_id>/request-missing")
@merchant_admin_only
def request_missing(account_id: int):
    """One click: ask WeChat again for the sets the provider needs (an update session)."""
    item = queries.merchant_account(_merchant_id(), account_id)
    if not forms.ConfirmForm().validate_on_submit():
        abort(400)
    extra = [int(i) for i in request.form.getlist("sets") if i.isdigit()]
    session = consent.start_update(
        item, current_user, queries.sets_to_request(item, extra),
        version=forms.CONSENT_VERSION, method="request_missing",
    )  # fmt: skip
    return see_other(url_for("merchant.session", public_id=session.public_id))


# --- connect wizard ------------------------------------------------------------------------------
# With several platforms open to the merchant, step 1 also asks which one (`platform`, its
# component AppID), carried like `type` and `sets` to the consent POST; with one, nothing is asked.


def _allowed() -> list:
    return platforms.platforms_for_merchant(current_user.merchant)


def _platform_of(form, allowed: list):
    """The platform the form names, or None with the reason on form.platform (call after
    form.validate(), which resets errors)."""
    try:
        return platforms.merchant_platform(current_user.merchant, form.platform.data or None)
    except platforms.NotAllowed:
        if not allowed:
            message = _("No platform is open to you yet. Please contact your service provider.")
        elif not form.platform.data:
            message = _("Choose the platform.")
        else:
            message = _("Choose one of the platforms listed.")
        form.platform.errors = [message]
        return None


def _type_page(form, allowed: list, status: int = 200):
    page = render("merchant/connect_type.html", form=form, step=1, platform_rows=allowed)
    return page, status


@bp.get("/connect")
@merchant_admin_only
def connect():
    """Step 1: which platform (when there are several) and which kind of account."""
    return _type_page(forms.AccountTypeForm(request.args), _allowed())


@bp.get("/connect/permissions")
@merchant_admin_only
def connect_permissions():
    """Step 2: the permission sets, the provider's required ones pre-selected."""
    form, allowed = forms.AccountTypeForm(request.args), _allowed()
    valid = form.validate()
    platform = _platform_of(form, allowed)
    if not valid or platform is None:
        return _type_page(form, allowed, 422)
    return _permissions_page(forms.PermissionsForm(request.args), platform, allowed)


def _permissions_page(form, platform, allowed: list, status: int = 200):
    offered = queries.offered_sets(form.type.data, platform.component_appid)
    required = queries.required_set_ids(form.type.data, platform.component_appid)
    forms.with_choices(form, offered)
    if not request.args.getlist("sets") and not form.errors:
        form.sets.data = list(required)
    page = render(
        "merchant/connect_permissions.html",
        form=form,
        step=2,
        offered=offered,
        required=required,
        platform=platform,
        choose_platform=len(allowed) > 1,
    )
    return page, status


@bp.route("/connect/consent", methods=["GET", "POST"])
@merchant_admin_only
def connect_consent():
    """Step 3: what the provider will access and store; explicit consent opens the session."""
    source = request.form if request.method == "POST" else request.args
    chosen, allowed = forms.PermissionsForm(source), _allowed()
    platform = _platform_of(chosen, allowed)
    if chosen.type.data not in consent.AUTH_TYPES or platform is None:
        if chosen.type.data not in consent.AUTH_TYPES:
            chosen.type.errors = [_("Choose the kind of account.")]
        return _type_page(chosen, allowed, 422)
    offered = queries.offered_sets(chosen.type.data, platform.component_appid)
    if not forms.with_choices(chosen, offered).validate():
        return _permissions_page(chosen, platform, allowed, 422)
    formdata = source if request.method == "POST" else None
    key = secrets.token_urlsafe(24)
    form = forms.ConsentForm(
        formdata, type=chosen.type.data, sets=chosen.sets.data, consent_key=key
    )
    forms.with_choices(form, offered)
    if request.method == "POST" and form.validate():
        session = consent.start_connection(
            current_user.merchant, current_user, account_type=chosen.type.data,
            set_ids=chosen.sets.data, version=forms.CONSENT_VERSION,
            consent_key=(form.consent_key.data or "")[:43] or None,
            component_appid=platform.component_appid,
        )  # fmt: skip
        return see_other(url_for("merchant.session", public_id=session.public_id))
    status = 422 if request.method == "POST" else 200
    required = queries.required_set_ids(chosen.type.data, platform.component_appid)
    left_out = [i for i in required if i not in (chosen.sets.data or [])]
    return render(
        "merchant/connect_consent.html", form=form, chosen=chosen, step=3, left_out=left_out,
        platform=platform, choose_platform=len(allowed) > 1,
    ), status  # fmt: skip


# --- a session: connect step, live status, result -----------------------------------------------


@bp.get("/sessions/<public_id>")
def session(public_id: str):
    """Step 4 (connect, with a live status panel) and step 5 (result) of one session."""
    item = queries.merchant_session(_merchant_id(), public_id)
    state = queries.session_state(item)
    context = {
        "item": item,
        "state": state,
        "account": queries.session_account(item),
        "account_type": queries.account_type_of(item),
        "platform": platforms.get(item.component_appid),
        "connect_url": sessions.connect_url(item),
        "form": forms.ConfirmForm(),
        "plan": consent.wechat_page_plan(item),
        "change": consent.session_change(item) if state == "completed" else None,
        "swapped": False,
        "swapped_status": is_partial_request(),
    }
    if state in ("waiting", "finishing") or not is_partial_request():
        context["qr"] = qr_svg(context["connect_url"]) if state in ("waiting", "finishing") else ""
        return render("merchant/session.html", fragment="status", **context)
    # A final state while polling: swap the whole step area in place and stop polling
    # (with a <title> so htmx retitles the tab).
    context["swapped"] = True
    body = render("merchant/session.html", fragment="session", qr="", **context)
    response = make_response(body, 286)
    response.headers["HX-Retarget"] = "#session"
    response.headers["HX-Reswap"] = "outerHTML"
    return response


# --- update, revoke, delete -----------------------------------------------------------------------


@bp.route("/accounts/<int:account_id>/update", methods=["GET", "POST"])
@merchant_admin_only
def update(account_id: int):
    """Choose the new permission list, see what changes, then reconnect with the account pinned."""
    item = queries.merchant_account(_merchant_id(), account_id)
    offered = queries.offered_sets(item.account_type or "official_account", item.component_appid)
    current = list(item.grant.set_ids if item.grant else [])
    form = forms.with_choices(forms.UpdateForm(sets=current), offered)
    preview = request.method == "POST" and "preview" in request.form
    if request.method == "POST" and not preview and form.validate():
        session = consent.start_update(item, current_user, form.sets.data,
                                       version=forms.CONSENT_VERSION)  # fmt: skip
        return see_other(url_for("merchant.session", public_id=session.public_id))
    if preview:
        form.sets.data = [int(i) for i in request.form.getlist("sets") if i.isdigit()]
    chosen = set(form.sets.data or [])
    context = {
        "account": item, "form": form, "offered": offered, "current": current,
        "added": sorted(chosen - set(current)), "removed": sorted(set(current) - chosen),
        "required": queries.required_of(item),
    }  # fmt: skip
    status = 422 if request.method == "POST" and not preview else 200
    return render("merchant/update.html", fragment="diff", **context), status


@bp.get("/accounts/<int:account_id>/revoke")
def revoke(account_id: int):
    """How to revoke in WeChat, with the live status of this account."""
    item, tombstone = queries.account_or_tombstone(_merchant_id(), account_id)
    page = render(
        "merchant/revoke.html",
        fragment="revoke_status",
        account=item,
        tombstone=tombstone,
        account_id=account_id,
    )
    return (page, 286) if tombstone and is_partial_request() else page


@bp.route("/accounts/<int:account_id>/delete", methods=["GET", "POST"])
@merchant_admin_only
def delete(account_id: int):
    """Delete my data: a confirmation page, then the purge."""
    item, tombstone = queries.account_or_tombstone(_merchant_id(), account_id)
    form = forms.ConfirmForm()
    error = None
    if item is not None and request.method == "POST" and form.validate_on_submit():
        try:
            purge.request_deletion(item, actor=current_user)
        except purge.StillAuthorized:
            error = "still_authorized"
        except purge.CannotVerifyRevocation:
            error = "cannot_verify"
        else:
            flash(_("The account's data has been deleted."), "success")
            return see_other(url_for("merchant.accounts"))
    status = {"still_authorized": 409, "cannot_verify": 503}.get(error, 200)
    # Say up front whether deletion can happen now, instead of refusing after the click.
    readiness = error or (purge.deletion_readiness(item) if item is not None else "ready")
    return render(
        "merchant/delete.html", account=item, tombstone=tombstone, form=form, error=error,
        readiness=readiness,
    ), status  # fmt: skip
