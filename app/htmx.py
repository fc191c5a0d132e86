"""One template for page and fragment: render the whole page, or just the block htmx targets."""

from flask import render_template
from jinja2_fragments.flask import render_block

from app.extensions import htmx


def is_partial_request() -> bool:
    """True for htmx requests that want a fragment (not boosted or history-restore requests)."""
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request


def render(template: str, fragment: str | None = None, **context) -> str:
    """Render `fragment` (a block of `template`) for htmx requests, else the whole page."""
    if fragment and is_partial_request():
        return render_block(template, fragment, **context)
    return render_template(template, **context)


def add_vary_header(response):
    """Pages and fragments share URLs, so caches must key on the htmx request header."""
    if response.mimetype == "text/html":
        response.vary.add("HX-Request")
    return response
