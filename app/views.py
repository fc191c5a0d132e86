"""Blueprint registration and the few routes that belong to no area."""

from flask import Blueprint, Flask, redirect, request, session, url_for
from flask_login import current_user, login_required
from sqlalchemy import text

from app.extensions import db
from app.forms import LocaleForm
from app.redirects import safe_next
from app.services import accounts
from app.services.platform import status

bp = Blueprint("main", __name__)


def register_blueprints(app: Flask) -> None:
    """Mount every area of the portal."""
    from app.api.views import bp as api_bp
    from app.auth.password_reset import bp as password_reset_bp
    from app.auth.views import bp as auth_bp
    from app.callbacks.views import bp as callbacks_bp
    from app.connect.views import bp as connect_bp
    from app.merchant.views import bp as merchant_bp
    from app.staff.views import bp as staff_bp

    app.register_blueprint(bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(callbacks_bp, url_prefix="/wechat")
    app.register_blueprint(connect_bp)
    app.register_blueprint(api_bp, url_prefix="/api/v1")
    app.register_blueprint(merchant_bp, url_prefix="/merchant")
    app.register_blueprint(staff_bp, url_prefix="/staff")
    app.register_blueprint(password_reset_bp)


@bp.get("/")
@login_required
def index():
    """Send each person to their home: staff to the console, merchants to their accounts."""
    return redirect(url_for("staff.overview" if current_user.is_staff else "merchant.accounts"))


@bp.post("/locale")
def set_locale():
    """Switch the interface language (saved on the user when signed in)."""
    form = LocaleForm()
    if form.validate_on_submit():
        session["locale"] = form.locale.data
        if current_user.is_authenticated:
            accounts.update_preferences(current_user, locale=form.locale.data)
    return redirect(safe_next(form.next.data), code=303)


@bp.get("/healthz")
def healthz():
    """Liveness with a database round trip, for load balancers."""
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:  # any failure means "not healthy"; details stay in the logs
        return {"status": "error", "database": "unreachable"}, 503
    return {"status": "ok", "database": "ok"}


@bp.get("/readyz")
def readyz():
    """Readiness: 503 until the database is reachable and migrated to head (JSON for machines)."""
    ready, body = status.readiness()
    return body, 200 if ready else 503


@bp.app_context_processor
def inject_locale_form():
    return {"locale_form": LocaleForm(formdata=None, next=request.full_path.rstrip("?"))}
