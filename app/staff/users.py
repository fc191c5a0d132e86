"""Staff console: provider staff users and their roles (administrators only)."""

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from app.auth.access import require_staff_role
from app.extensions import db
from app.htmx import render
from app.models import User
from app.services import accounts
from app.services.access import mfa, roles
from app.staff.forms import ConfirmForm, StaffRoleForm, StaffUserForm, require_confirmation

bp = Blueprint("users", __name__)

ROLE_LABELS = {"viewer": _l("Viewer"), "operator": _l("Operator"), "admin": _l("Administrator")}


@bp.get("/")
@require_staff_role("admin")
def index():
    """Every staff member with role and two-factor status, and the form to add one."""
    return _render(StaffUserForm(formdata=None))


@bp.post("/")
@require_staff_role("admin")
def create():
    """Add a staff member with a role; the first password is shown once on the answer page."""
    form = StaffUserForm()
    if not form.validate_on_submit():
        return _render(form), 422
    try:
        user, password = roles.create_staff(
            form.email.data, form.name.data or "", form.role.data, actor=current_user
        )
    except accounts.EmailTaken:
        form.email.errors.append(_("An account with this email already exists."))
        return _render(form), 422
    # Rendered directly (not redirected): the password must not travel in a URL or the session.
    response = current_app.make_response(
        _render(StaffUserForm(formdata=None), new_user=user, password=password)
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/<int:user_id>/role")
@require_staff_role("admin")
def change_role(user_id: int):
    """Change a staff member's role (the last administrator stays one)."""
    user = db.get_or_404(User, user_id)
    if not user.is_staff:
        return redirect(url_for("staff.users.index"), code=303)
    form = StaffRoleForm()
    if not form.validate_on_submit():
        return _render(StaffUserForm(formdata=None)), 422
    try:
        roles.change_role(user, form.role.data, actor=current_user)
    except roles.LastAdmin:
        flash(_("The last administrator cannot be given another role."), "error")
        return _render(StaffUserForm(formdata=None)), 409
    role = ROLE_LABELS[form.role.data]
    flash(_("%(email)s now has the role %(role)s.", email=user.email, role=role), "success")
    return redirect(url_for("staff.users.index"), code=303)


@bp.get("/<int:user_id>/two-factor/reset")
@require_staff_role("admin")
def confirm_reset_two_factor(user_id: int):
    """Confirmation page before resetting a staff member's two-factor sign-in."""
    user = _other_staff_member(user_id)
    return render_template("staff/confirm_reset_two_factor.html", user=user, form=ConfirmForm())


@bp.post("/<int:user_id>/two-factor/reset")
@require_staff_role("admin")
def reset_two_factor(user_id: int):
    """Remove a staff member's lost authenticator (they enroll again; their sessions end)."""
    user = _other_staff_member(user_id)
    require_confirmation()
    mfa.reset(user, actor=current_user)
    flash(_("Two-factor sign-in of %(email)s was reset.", email=user.email), "success")
    return redirect(url_for("staff.users.index"), code=303)


def _other_staff_member(user_id: int) -> User:
    user = db.get_or_404(User, user_id)
    if not user.is_staff or user.id == current_user.id:
        abort(400)  # one's own is turned off in Settings, with a current code
    return user


def _render(form, new_user=None, password=None):
    staff = roles.list_staff()
    return render(
        "staff/users.html",
        staff=staff,
        enrolled={u.id for u in staff if mfa.is_enrolled(u)},
        form=form,
        role_labels=ROLE_LABELS,
        new_user=new_user,
        password=password,
        login_url=url_for("auth.login", _external=True),
    )
