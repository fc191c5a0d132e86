"""Blueprint registration and the few routes that belong to no area."""

from flask import Blueprint, Flask, abort, make_response, redirect, request, session, url_for
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from sqlalchemy import text

from app import labels
from app.extensions import db
from app.forms import LocaleForm
from app.i18n import locale_code
from app.redirects import safe_next
from app.services import accounts
from app.services.authorization import authorizers
from app.services.platform import platforms, provider, status
from app.wechat import permissions

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


@bp.get("/provider/logo")
def provider_logo():
    """The provider's logo (public: the phone landing shows it before anyone signs in)."""
    found = provider.logo()
    if found is None:
        abort(404)
    response = make_response(found[0])
    response.headers["Content-Type"] = found[1]
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@bp.get("/platforms/<component_appid>/logo")
def platform_logo(component_appid: str):
    """A platform's logo, for the wizard's platform choice (public, like the provider's)."""
    found = platforms.logo(component_appid)
    if found is None:
        abort(404)
    response = make_response(found[0])
    response.headers["Content-Type"] = found[1]
    response.headers["Cache-Control"] = "public, max-age=3600"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.app_context_processor
def inject_provider():
    """The provider as merchants know it (the platform's name in WeChat) on every page."""
    current = provider.current_provider()
    return {"provider": current, "provider_label": current.name or _l("your service provider")}


@bp.app_template_global("label")
def label_of(vocabulary: str, value) -> str:
    """A stored value's name in the current language (see app/labels.py)."""
    return labels.label(vocabulary, value)


@bp.app_template_global()
def missing_set_names(account_type: str | None, set_ids, component_appid=None) -> list[str]:
    """Names of the required sets a grant lacks (a partial authorization), in this language;
    required by the account's platform (`component_appid`; default: the current one)."""
    missing = authorizers.missing_required(account_type, set_ids, component_appid)
    return [permissions.name(i, locale_code()) for i in missing]
