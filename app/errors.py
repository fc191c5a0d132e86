"""Error pages in both languages; JSON for API clients."""

from datetime import UTC, datetime

from flask import Flask, render_template, request
from flask_babel import format_datetime, gettext
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

ERROR_TEXTS = {
    400: (
        _l("Bad request"),
        _l("The request could not be understood. Please go back and try again."),
    ),
    403: (_l("Not allowed"), _l("Your account cannot open this page.")),
    404: (_l("Page not found"), _l("This page does not exist, or you do not have access to it.")),
    405: (_l("Not allowed"), _l("This address does not accept that kind of request.")),
    422: (_l("Please check your input"), _l("Some of the information sent was not valid.")),
    429: (_l("Too many attempts"), _l("Please wait a moment before trying again.")),
    500: (
        _l("Something went wrong"),
        _l("An unexpected error happened on our side. It has been logged; please try again later."),
    ),
}


def retry_time():
    """When the rate limit this request broke lets the client in again (None: no such limit)."""
    from app.extensions import limiter

    breached = limiter.current_limit
    if breached is None or breached.remaining > 0:
        return None
    return datetime.fromtimestamp(breached.reset_at, UTC)


def render_error(error: HTTPException):
    """Render an HTTP error as a page (or JSON under /api/)."""
    code = error.code or 500
    title, message = ERROR_TEXTS.get(code, (error.name, error.description))
    retry_at = retry_time() if code == 429 else None
    if retry_at is not None:
        when = format_datetime(retry_at, "medium")
        message = gettext("Too many failed attempts. You can try again after %(when)s.", when=when)
    if request.path.startswith("/api/"):
        return {
            "error": {"code": error.name.lower().replace(" ", "_"), "message": str(message)}
        }, code
    return render_template("errors/error.html", code=code, title=title, message=message), code


def render_csrf_error(error: CSRFError):
    """A missing or wrong CSRF token is a 400 with a plain explanation."""
    title = _l("Your form expired")
    message = _l(
        "For your security the form could not be accepted. Please reload the page and try again."
    )
    return render_template("errors/error.html", code=400, title=title, message=message), 400


def register_error_handlers(app: Flask) -> None:
    """Install the handlers for every HTTP error and unexpected exceptions."""
    app.register_error_handler(CSRFError, render_csrf_error)
    # Unhandled exceptions reach this handler as InternalServerError (unless TESTING propagates).
    app.register_error_handler(HTTPException, render_error)
