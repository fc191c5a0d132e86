"""Sign in and out, accept an invitation, personal settings."""

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user

from app.auth.forms import (
    AcceptInvitationForm,
    ChangePasswordForm,
    LoginForm,
    NoticesForm,
    PreferencesForm,
)
from app.extensions import limiter
from app.redirects import safe_next
from app.services import accounts
from app.services.notify import notices

bp = Blueprint("auth", __name__)


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login():
    """Show the sign-in form and sign the user in."""
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = LoginForm(next=request.args.get("next", ""))
    if form.validate_on_submit():
        user = accounts.authenticate(form.email.data, form.password.data)
        if user is not None:
            login_user(user, remember=form.remember.data)
            return redirect(safe_next(form.next.data), code=303)
        # One message for every failure, so the form does not reveal which emails exist.
        form.form_errors.append(_("Email or password is incorrect."))
    status = 422 if form.is_submitted() else 200
    return render_template("auth/login.html", form=form), status


@bp.post("/logout")
@login_required
def logout():
    """Sign out (POST only, so no link or image can sign someone out)."""
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
        notices=NoticesForm(prefix="notices", obj=current_user),
    )
