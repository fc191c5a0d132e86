"""Who may enter which area, and which staff role each console route needs."""

import functools

from flask import abort, current_app, redirect, request, url_for
from flask_login import current_user

from app.extensions import login_manager
from app.models import StaffRole
from app.services.access import mfa, roles

STAFF_ROLE_ATTRIBUTE = "required_staff_role"


def require_staff() -> None:
    """Blueprint guard: provider staff only, enrolled in two-factor sign-in when that is required,
    and only on routes that name the staff role they need (a route without one answers 403)."""
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if not current_user.is_staff:
        abort(403)
    if mfa.must_enroll(current_user, current_app.config["GRANTDESK_STAFF_MFA"]):
        return redirect(url_for("auth.two_factor.enroll"))
    view = current_app.view_functions.get(request.endpoint)
    if getattr(view, STAFF_ROLE_ATTRIBUTE, None) is None:
        abort(403)  # deny by default: every console route states its role
    return None


def require_staff_role(role: str | StaffRole):
    """Route decorator: the signed-in staff member's role must include `role`, else 403."""
    role = StaffRole(role)

    def decorate(view):
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if not roles.has_role(current_user, role):
                abort(403)
            return view(*args, **kwargs)

        setattr(guarded, STAFF_ROLE_ATTRIBUTE, role)
        return guarded

    return decorate


def can(role: str) -> bool:
    """Template helper: whether the current user may use actions that need `role`."""
    return roles.has_role(current_user, role)


def require_merchant_admin() -> None:
    """Blueprint guard: merchant users only (admins and viewers; scoped to their merchant)."""
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if current_user.is_staff:
        abort(403)
    return None


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def refuse_viewer_changes() -> None:
    """Blueprint guard: a merchant viewer sees everything of the merchant but changes nothing."""
    if (
        current_user.is_authenticated
        and not current_user.is_staff
        and not current_user.is_merchant_admin
        and request.method not in SAFE_METHODS
    ):
        abort(403)


def merchant_admin_only(view):
    """A page that only leads to a change (a wizard step, a confirmation): 403 for viewers."""

    @functools.wraps(view)
    def guarded(*args, **kwargs):
        if not current_user.is_merchant_admin:
            abort(403)
        return view(*args, **kwargs)

    return guarded
