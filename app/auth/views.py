"""Sign in and out, accept an invitation, personal settings."""

import hashlib

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_limiter.util import get_remote_address
from flask_login import current_user, login_required, login_user, logout_user

from app.auth import two_factor
from app.auth.forms import (
    AcceptInvitationForm,
    ChangePasswordForm,
    LoginForm,
    NoticesForm,
    PreferencesForm,
)
from app.auth.session_cookies import end_browser_session
from app.extensions import limiter
from app.redirects import safe_next
from app.services import accounts
from app.services.access import sessions
from app.services.notify import notices

bp = Blueprint("auth", __name__)
bp.register_blueprint(two_factor.bp)


def _account_limit() -> str:
    return current_app.config["LOGIN_ACCOUNT_RATE_LIMIT"]


def _account_total_limit() -> str:
    return current_app.config["LOGIN_ACCOUNT_TOTAL_RATE_LIMIT"]


def _address_limit() -> str:
    return current_app.config["LOGIN_ADDRESS_RATE_LIMIT"]


def _account_key() -> str:
    """The account a sign-in names (hashed: no email addresses in the limiter's storage)."""
    email = accounts.normalize_email(request.form.get("email", ""))
    return "account:" + hashlib.sha256(email.encode()).hexdigest()


def _account_at_address_key() -> str:
    return f"{_account_key()}@{get_remote_address()}"


def _sign_in_failed(response) -> bool:
    # Only wrong credentials count: a success, or a form that was never checked, costs nothing.
    return bool(g.get("sign_in_failed"))


def _failed_sign_ins(limit, key_func, scope):
    return limiter.limit(
        limit, key_func=key_func, methods=["POST"], deduct_when=_sign_in_failed, scope=scope
    )


# Tight per account and address, loose per address (an office behind one NAT), and a per-account
# total above what one address may reach: one account's typos never lock out another account,
# and one address's failures never lock out another address.
@bp.route("/login", methods=["GET", "POST"])
@_failed_sign_ins(_account_limit, _account_at_address_key, "login-account")
@_failed_sign_ins(_address_limit, get_remote_address, "login-address")
@_failed_sign_ins(_account_total_limit, _account_key, "login-account-total")
def login():
    """Show the sign-in form and sign the user in."""
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = LoginForm(next=request.args.get("next", ""))
    if form.validate_on_submit():
        user = accounts.authenticate(form.email.data, form.password.data)
        if user is not None and two_factor.needs_second_step(user):
            return two_factor.start_second_step(
                user, remember=form.remember.data, next_url=form.next.data
            )
        if user is not None:
            login_user(user, remember=form.remember.data)
            return redirect(safe_next(form.next.data), code=303)
        g.sign_in_failed = True
        # One message for every failure, so the form does not reveal which emails exist.
        form.form_errors.append(_("Email or password is incorrect."))
    status = 422 if form.is_submitted() else 200
    return render_template("auth/login.html", form=form), status


@bp.post("/logout")
@login_required
def logout():
    """Sign out (POST only, so no link or image can sign someone out); the server forgets it."""
    end_browser_session()
    logout_user()
    flash(_("You have signed out."), "info")
    return redirect(url_for("auth.login"), code=303)


@bp.route("/invitations/<token>", methods=["GET", "POST"])
def accept_invitation(token: str):
    """Set a password from an invitation link and become the merchant's administrator."""
    try:
        invitation = accounts.find_open_invitation(token)
    except accounts.InvitationInvalid as error:
        return render_template("auth/invitation_invalid.html", reason=error.details["reason"]), 410
    form = AcceptInvitationForm()
    if form.validate_on_submit():
        try:
            user = accounts.accept_invitation(token, form.password.data, form.name.data)
        except accounts.InvitationInvalid as error:
            return render_template(
                "auth/invitation_invalid.html", reason=error.details["reason"]
            ), 410
        except accounts.EmailTaken:
            form.form_errors.append(_("An account with this email already exists."))
        else:
            end_browser_session()
            logout_user()
            login_user(user)
            flash(_("Welcome! Your account is ready."), "success")
            return redirect(url_for("main.index"), code=303)
    status = 422 if form.is_submitted() else 200
    return render_template("auth/invitation.html", form=form, invitation=invitation), status


@bp.get("/settings")
@login_required
def settings():
    """Language, time zone and password."""
    return _render_settings()


@bp.post("/settings/preferences")
@login_required
def save_preferences():
    """Save language and time zone."""
    form = PreferencesForm(prefix="pref")
    if not form.validate_on_submit():
        return _render_settings(preferences=form), 422
    accounts.update_preferences(current_user, locale=form.locale.data, timezone=form.timezone.data)
    flash(_("Your settings were saved."), "success")
    return redirect(url_for("auth.settings"), code=303)


@bp.post("/settings/password")
@login_required
def change_password():
    """Change the password; other sessions are signed out."""
    form = ChangePasswordForm(prefix="pw")
    if form.validate_on_submit():
        try:
            accounts.change_password(current_user, form.current_password.data, form.password.data)
        except accounts.WrongPassword:
            form.current_password.errors.append(_("The current password is not correct."))
        else:
            login_user(current_user._get_current_object())  # new session id for the new nonce
            flash(_("Your password was changed."), "success")
            return redirect(url_for("auth.settings"), code=303)
    return _render_settings(password=form), 422


@bp.post("/settings/sessions/<int:session_id>/revoke")
@login_required
def revoke_session(session_id: int):
    """Sign one of your own browsers out; revoking this one signs you out here."""
    record = sessions.find_own(current_user, session_id)
    if record is None:
        abort(404)
    this_device = record.id == current_user.session_record.id
    sessions.revoke(record, actor=current_user)
    if this_device:
        logout_user()
        return redirect(url_for("auth.login"), code=303)
    flash(_("That device was signed out."), "success")
    return redirect(url_for("auth.settings"), code=303)


@bp.post("/settings/sessions/revoke-all")
@login_required
def revoke_all_sessions():
    """Sign out everywhere, this browser included."""
    sessions.revoke_all(current_user, actor=current_user)
    logout_user()
    flash(_("You have signed out on every device."), "info")
    return redirect(url_for("auth.login"), code=303)


@bp.post("/settings/notices")
@login_required
def save_notices():
    """Opt in or out of account notices by email (merchant administrators)."""
    form = NoticesForm(prefix="notices")
    if not form.validate_on_submit():
        return _render_settings(), 400
    notices.set_account_notices(current_user, bool(form.account_notices.data))
    flash(_("Your settings were saved."), "success")
    return redirect(url_for("auth.settings"), code=303)


def _render_settings(preferences=None, password=None):
    return render_template(
        "auth/settings.html",
        preferences=preferences or PreferencesForm(prefix="pref", obj=current_user),
        password=password or ChangePasswordForm(prefix="pw"),
        sessions=sessions.list_active(current_user),
        current_session_id=current_user.session_record.id,
        describe_device=sessions.describe_device,
        notices=NoticesForm(prefix="notices", obj=current_user),
    )
