"""Sign-in plumbing, CSRF, rate limits and the security headers of every response."""

from flask import Flask, request
from flask_babel import lazy_gettext as _l
from jinja2 import StrictUndefined, Undefined
from werkzeug.middleware.proxy_fix import ProxyFix

from app.auth import session_cookies
from app.auth.session_cookies import load_user
from app.extensions import csrf, htmx, limiter, login_manager
from app.htmx import add_vary_header
from app.services.accounts import use_fast_hashing

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        # htmx injects a tiny indicator stylesheet unless told not to; we tell it (meta config).
        "style-src 'self'",
        "img-src 'self' data:",
        "form-action 'self' https://mp.weixin.qq.com https://open.weixin.qq.com",
        "frame-ancestors 'none'",
        "base-uri 'self'",
        "object-src 'none'",
    ]
)


def init_app(app: Flask) -> None:
    """Wire Flask-Login, CSRFProtect, Flask-Limiter, flask-htmx and the response headers."""
    trust_proxies(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "strong"
    login_manager.login_message_category = "info"
    login_manager.login_message = _l("Please sign in to see this page.")
    login_manager.user_loader(load_user)
    session_cookies.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    htmx.init_app(app)
    app.after_request(set_security_headers)
    app.after_request(add_vary_header)
    strict = app.config.get("TEMPLATES_STRICT_UNDEFINED")
    app.jinja_env.undefined = StrictUndefined if strict else Undefined
    use_fast_hashing(bool(app.config.get("PASSWORD_HASH_FAST")))


def trust_proxies(app: Flask) -> None:
    """Believe X-Forwarded-For/-Proto/-Host from exactly the configured number of proxy hops.

    Without it (the default) forwarded headers are ignored: anyone could send them.
    """
    hops = int(app.config.get("GRANTDESK_TRUSTED_PROXIES") or 0)
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)


def set_security_headers(response):
    """CSP without inline script, no framing, and a Referer WeChat's PC page accepts."""
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response
