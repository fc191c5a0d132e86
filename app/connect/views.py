"""The link page our QR codes encode, WeChat's redirect back, and the result page."""

import logging
import re
from datetime import timedelta

from flask import Blueprint, abort, redirect, request, url_for
from flask_babel import get_locale
from flask_login import current_user

from app.htmx import render
from app.services import DomainError, clock
from app.services.authorization import consent, grants, sessions
from app.wechat import permissions
from app.wechat.errors import WeChatError

bp = Blueprint("connect", __name__)
# Werkzeug no longer parses user agents; this is all the page needs to know.
PHONE_USER_AGENT = re.compile(r"Mobile|Android|iPhone|iPad")
log = logging.getLogger(__name__)


@bp.get("/connect/<token>")
def link(token: str):
    """Show the clickable WeChat links for a session, on a fresh pre_auth_code every view."""
    try:
        session = sessions.find_session_by_link(token)
    except sessions.SessionNotFound:
        abort(404)
    try:
        links = sessions.authorization_links(session)
    except sessions.SessionClosed:
        return render("connect/link.html", session=session, links=None, unavailable=False), 410
    except sessions.TooManyViews as limited:
        retry_after = limited.details["retry_after"]
        page = render(
            "connect/link.html", session=session, links=None, unavailable=False,
            retry_after=retry_after, retry_at=clock.now() + timedelta(seconds=retry_after),
        )  # fmt: skip
        return page, 429, {"Retry-After": str(retry_after)}
    except (WeChatError, DomainError) as error:
        log.warning("could not mint a pre_auth_code: %s", type(error).__name__)
        return render("connect/link.html", session=session, links=None, unavailable=True), 503
    return render(
        "connect/link.html", session=session, links=links, unavailable=False,
        in_wechat="MicroMessenger" in request.user_agent.string,
        on_phone=bool(PHONE_USER_AGENT.search(request.user_agent.string)),
        page_url=sessions.connect_url(session), plan=consent.wechat_page_plan(session),
    )  # fmt: skip


@bp.get("/wechat/authorized")
def authorized():
    """WeChat's redirect after consent: exchange the code once, then show the result."""
    public_id = request.args.get("session")
    try:
        grants.complete_from_redirect(public_id, request.args.get("auth_code"))
    except sessions.SessionNotFound:
        abort(404)
    except sessions.InvalidRequest:
        abort(400)
    except (WeChatError, DomainError) as error:
        # The push carries the same code; the session completes when it arrives.
        log.warning("redirect exchange failed: %s", type(error).__name__)
    return redirect(url_for("connect.result", public_id=public_id), code=303)


@bp.get("/connect/result/<public_id>")
def result(public_id: str):
    """A session's outcome: its merchant's admins go to their page, others see a neutral note."""
    try:
        session = sessions.find_session(public_id)
    except sessions.SessionNotFound:
        abort(404)
    own = (
        current_user.is_authenticated
        and not current_user.is_staff
        and current_user.merchant_id == session.merchant_id
    )
    if own:
        # The merchant's own session page shows the full result (step 5 of the wizard).
        return redirect(url_for("merchant.session", public_id=public_id), code=303)
    response = render("connect/result.html", fragment="session_status", session=session)
    settled = session.status.value != "open"
    if settled and request.headers.get("HX-Request") and request.headers.get("HX-Target"):
        return response, 286  # stop htmx polling
    return response


@bp.context_processor
def permission_helpers():
    return {"permission_name": lambda set_id: permissions.name(set_id, str(get_locale()))}
