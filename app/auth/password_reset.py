"""Forgot password: ask for a link by email, then choose a new password on it."""

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_limiter.util import get_remote_address

from app.auth.forms import ForgotPasswordForm, ResetPasswordForm
from app.extensions import limiter
from app.services import accounts
from app.services.access import password_reset
from app.services.notify import mail

bp = Blueprint("password_reset", __name__)


def _address_key() -> str:
    # Per address, whatever client asks: nobody can flood one mailbox with reset links.
    return "reset-address:" + accounts.normalize_email(request.form.get("email", ""))


def _address_limit() -> str:
    return current_app.config["PASSWORD_RESET_RATE_LIMIT"]


def _client_limit() -> str:
    return current_app.config["PASSWORD_RESET_CLIENT_RATE_LIMIT"]


@bp.route("/forgot-password", methods=["GET", "POST"])
@limiter.limit(_client_limit, methods=["POST"], key_func=get_remote_address)
@limiter.limit(_address_limit, methods=["POST"], key_func=_address_key)
def forgot():
    """Ask for a reset link; the answer is the same whether or not the address has an account."""
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        password_reset.request_reset(form.email.data, ip=request.remote_addr)
        return redirect(url_for("password_reset.forgot", sent=1), code=303)
    status = 422 if form.is_submitted() else 200
    sent = request.args.get("sent") == "1"
    return render_template(
        "auth/forgot_password.html", form=form, sent=sent, mail_enabled=mail.enabled()
    ), status


@bp.route("/reset-password", methods=["GET", "POST"])
def reset():
    """Choose a new password from an emailed link (single use; other sessions end)."""
    # The token rides in the query string (masked by the log filter like every `token`), and
    # in the form body on POST, never in a path an access log would keep.
    source = request.form if request.method == "POST" else request.args
    token = source.get("token", "")[:200]
    try:
        password_reset.find_open_reset(token)
    except password_reset.ResetInvalid:
        return render_template("auth/reset_invalid.html"), 410
    form = ResetPasswordForm(token=token)
    if form.validate_on_submit():
        try:
            password_reset.reset_password(token, form.password.data)
        except password_reset.ResetInvalid:
            return render_template("auth/reset_invalid.html"), 410
        except accounts.WeakPassword:
            form.password.errors.append(_("This password is too short."))
        else:
            flash(_("Your password was changed. Sign in with the new one."), "success")
            return redirect(url_for("auth.login"), code=303)
    status = 422 if form.is_submitted() else 200
    return render_template("auth/reset_password.html", form=form), status
