"""Who may enter which area."""

from flask import abort
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
    """Blueprint guard: merchant administrators only (their data is scoped to their merchant)."""
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if current_user.is_staff:
        abort(403)
    return None
