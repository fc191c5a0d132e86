"""Who may enter which area."""

import functools

from flask import abort, request
from flask_login import current_user

from app.extensions import login_manager


def require_staff() -> None:
    """Blueprint guard: provider staff only."""
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if not current_user.is_staff:
        abort(403)
    return None


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
