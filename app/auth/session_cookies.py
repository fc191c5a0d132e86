"""Flask-Login glue for server-side sessions: what the cookies carry and when they change.

The session cookie's user id is a session id (app/services/access/sessions.py); the remember-me
cookie carries a separate per-device token, signed like Flask-Login's own, rotated on each use.
Any `login_user()` call starts a recorded session, so every sign-in path gets one.
"""

from datetime import UTC, datetime, timedelta

from flask import Flask, current_app, g, request, session
from flask_login import user_logged_in
from flask_login.utils import decode_cookie, encode_cookie

from app.services.access import sessions

REMEMBER_PREFIX = "remember:"


def policy() -> sessions.SessionPolicy:
    config = current_app.config
    return sessions.SessionPolicy(
        idle=timedelta(hours=config["GRANTDESK_SESSION_IDLE_HOURS"]),
        remember=config["REMEMBER_COOKIE_DURATION"],
    )


def _remember_cookie_name() -> str:
    return current_app.config.get("REMEMBER_COOKIE_NAME", "remember_token")


def load_user(session_id: str):
    """Flask-Login's user_loader: the user of a live session, else None (anonymous)."""
    if session_id.startswith(REMEMBER_PREFIX):
        return _resume_remembered(session_id.removeprefix(REMEMBER_PREFIX))
    record = sessions.find_active(session_id)
    if record is None:
        return None
    sessions.touch(record, policy())
    user = record.user
    user.session_record = record
    return user


def _resume_remembered(remember_token: str):
    started = sessions.resume(remember_token, policy())
    if started is None:
        session.pop("_user_id", None)
        g.clear_remember_cookie = True
        return None
    session["_user_id"] = started.token
    session["_id"] = current_app.login_manager._session_identifier_generator()
    g.remember_cookie = started.remember_token
    user = started.record.user
    user.session_record = started.record
    return user


def _start_recorded_session(app: Flask, user, **_) -> None:
    """After login_user(): record the session; its id (not the user's) goes into the cookie."""
    remember = session.pop("_remember", None) == "set"  # we set our own remember cookie
    session.pop("_remember_seconds", None)
    started = sessions.start(
        user,
        remember=remember,
        policy=policy(),
        ip_address=request.remote_addr,
        user_agent=request.user_agent.string,
    )
    session["_user_id"] = started.token
    user.session_record = started.record
    if started.remember_token:
        g.remember_cookie = started.remember_token
        g.pop("clear_remember_cookie", None)


def end_browser_session() -> None:
    """Before logout_user(): revoke this browser's session and its remember-me token."""
    remembered = decode_cookie(request.cookies.get(_remember_cookie_name(), "")) or ""
    sessions.revoke_token(
        token=session.get("_user_id"),
        remember_token=remembered.removeprefix(REMEMBER_PREFIX) if remembered else None,
    )
    g.pop("remember_cookie", None)


def _write_remember_cookie(response):
    config = current_app.config
    if token := g.pop("remember_cookie", None):
        duration = config["REMEMBER_COOKIE_DURATION"]
        response.set_cookie(
            _remember_cookie_name(),
            value=encode_cookie(REMEMBER_PREFIX + token),
            expires=datetime.now(UTC) + duration,
            path=config.get("REMEMBER_COOKIE_PATH", "/"),
            domain=config.get("REMEMBER_COOKIE_DOMAIN"),
            secure=config.get("REMEMBER_COOKIE_SECURE", False),
            httponly=config.get("REMEMBER_COOKIE_HTTPONLY", True),
            samesite=config.get("REMEMBER_COOKIE_SAMESITE"),
        )
    elif g.pop("clear_remember_cookie", False):
        response.delete_cookie(
            _remember_cookie_name(),
            path=config.get("REMEMBER_COOKIE_PATH", "/"),
            domain=config.get("REMEMBER_COOKIE_DOMAIN"),
        )
    return response


def init_app(app: Flask) -> None:
    user_logged_in.connect(_start_recorded_session)
    app.after_request(_write_remember_cookie)
