"""Staff two-factor sign-in: the second step after the password, enrollment and turning it off."""

import time

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user

from app.auth.forms import TwoFactorCodeForm
from app.extensions import db, limiter
from app.merchant.qr import qr_svg
from app.models import User
from app.redirects import safe_next
from app.services import DomainError
from app.services.access import mfa

bp = Blueprint("two_factor", __name__)

PENDING_KEY = "mfa_pending"
PENDING_TTL_SECONDS = 300


def _mfa_limit() -> str:
    return current_app.config["MFA_RATE_LIMIT"]


def _pending_key() -> str:
    """Rate-limit key of the second step: the account being signed in (else the address)."""
    pending = session.get(PENDING_KEY) or {}
    return f"mfa-user:{pending.get('user')}" if pending.get("user") else request.remote_addr


def _current_user_key() -> str:
    return f"mfa-user:{current_user.get_id() if current_user.is_authenticated else None}"


def needs_second_step(user: User) -> bool:
    """Whether this user signs in with a code after the password."""
    return user.is_staff and mfa.is_enrolled(user)


def start_second_step(user: User, *, remember: bool, next_url: str | None):
    """Remember (in the session) who passed the password step, and ask for the code."""
    session[PENDING_KEY] = {
        "user": user.id,
        "nonce": user.session_nonce,
        "remember": bool(remember),
        "next": next_url or "",
        "at": int(time.time()),
    }
    return redirect(url_for("auth.two_factor.challenge"), code=303)


def _pending_user() -> tuple[User | None, dict]:
    pending = session.get(PENDING_KEY)
    if not isinstance(pending, dict) or time.time() - pending.get("at", 0) > PENDING_TTL_SECONDS:
        return None, {}
    user = db.session.get(User, pending.get("user"))
    if user is None or not user.is_active or user.session_nonce != pending.get("nonce"):
        return None, {}
    return user, pending


@bp.route("/login/two-factor", methods=["GET", "POST"])
@limiter.limit(_mfa_limit, methods=["POST"], key_func=_pending_key)
def challenge():
    """The second sign-in step: a code from the authenticator app or a recovery code."""
    user, pending = _pending_user()
    if user is None:
        session.pop(PENDING_KEY, None)
        flash(_("Please sign in again."), "info")
        return redirect(url_for("auth.login"), code=303)
    form = TwoFactorCodeForm()
    if form.validate_on_submit():
        try:
            mfa.verify_second_factor(user, form.code.data)
        except DomainError:
            form.code.errors.append(_("This code is not valid. Try the current one."))
        else:
            session.pop(PENDING_KEY, None)
            login_user(user, remember=pending["remember"])
            return redirect(safe_next(pending["next"]), code=303)
    status = 422 if form.is_submitted() else 200
    return render_template("auth/two_factor_challenge.html", form=form), status


@bp.get("/settings/two-factor")
@login_required
def enroll():
    """Set up an authenticator (QR code and secret), or manage the one set up."""
    _staff_only()
    if mfa.is_enrolled(current_user):
        return _render_manage()
    return _render_enroll(TwoFactorCodeForm(formdata=None))


@bp.post("/settings/two-factor")
@login_required
@limiter.limit(_mfa_limit, key_func=_current_user_key)
def confirm():
    """Turn two-factor sign-in on with a first code; the recovery codes are shown once."""
    _staff_only()
    form = TwoFactorCodeForm()
    if not form.validate_on_submit():
        return _render_enroll(form), 422
    try:
        codes = mfa.confirm_enrollment(current_user, form.code.data)
    except mfa.AlreadyEnrolled:
        return redirect(url_for("auth.two_factor.enroll"), code=303)
    except DomainError:
        form.code.errors.append(_("This code is not valid. Try the current one."))
        return _render_enroll(form), 422
    # Rendered directly, never redirected: the codes must not travel in a URL or the session.
    response = make_response(render_template("auth/two_factor_codes.html", codes=codes))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/settings/two-factor/disable")
@login_required
@limiter.limit(_mfa_limit, key_func=_current_user_key)
def disable():
    """Turn two-factor sign-in off (a current code is required); "reenroll" starts over."""
    _staff_only()
    form = TwoFactorCodeForm()
    if not form.validate_on_submit():
        return _render_manage(form), 422
    try:
        mfa.disable(current_user, form.code.data)
    except DomainError:
        form.code.errors.append(_("This code is not valid. Try the current one."))
        return _render_manage(form), 422
    if request.form.get("then") == "reenroll":
        flash(_("Scan the new QR code with your authenticator app."), "info")
        return redirect(url_for("auth.two_factor.enroll"), code=303)
    flash(_("Two-factor sign-in is off."), "success")
    return redirect(url_for("auth.settings"), code=303)


def _staff_only() -> None:
    if not current_user.is_staff:
        abort(403)


def _render_enroll(form):
    credential = mfa.start_enrollment(current_user)
    uri = mfa.provisioning_uri(current_user, credential)
    response = make_response(
        render_template(
            "auth/two_factor_enroll.html",
            form=form,
            secret=credential.secret,
            qr=qr_svg(uri),
            required=current_app.config["GRANTDESK_STAFF_MFA"] == "required",
        )
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _render_manage(form=None):
    return render_template(
        "auth/two_factor_manage.html",
        form=form or TwoFactorCodeForm(formdata=None),
        remaining=mfa.remaining_recovery_codes(current_user),
    )
