"""Language and time zone: the user's setting, then Accept-Language; shown in Asia/Shanghai."""

from datetime import UTC, datetime

from flask import Flask, current_app, request, session
from flask_babel import format_datetime, get_locale
from flask_login import current_user

from app.extensions import babel


def select_locale() -> str:
    """The user's saved language, then this browser's choice, then Accept-Language."""
    languages = current_app.config["LANGUAGES"]
    if current_user.is_authenticated and current_user.locale in languages:
        return current_user.locale
    if session.get("locale") in languages:
        return session["locale"]
    match = request.accept_languages.best_match(["zh_CN", "zh", "en"])
    if match is None:
        return current_app.config["BABEL_DEFAULT_LOCALE"]
    return "en" if match == "en" else "zh_CN"


def select_timezone() -> str:
    if current_user.is_authenticated and current_user.timezone:
        return current_user.timezone
    return current_app.config["BABEL_DEFAULT_TIMEZONE"]


def locale_code() -> str:
    """Our own code for the active language: "zh_CN" or "en"."""
    return "zh_CN" if get_locale().language == "zh" else "en"


def sentence_gap() -> str:
    """What goes between two sentences: a space in English, nothing in Chinese."""
    return "" if get_locale().language == "zh" else " "


def init_app(app: Flask) -> None:
    """Bind Flask-Babel and the template helpers that depend on the locale."""
    babel.init_app(app, locale_selector=select_locale, timezone_selector=select_timezone)
    app.jinja_env.globals["locale_code"] = locale_code
    app.jinja_env.globals["sentence_gap"] = sentence_gap
    app.jinja_env.filters["datetime"] = lambda value, fmt="medium": (
        format_datetime(_moment(value), _pattern(fmt)) if value else "—"
    )


def _moment(value):
    """A datetime, or WeChat's Unix seconds (CreateTime, auth_time) as one."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return value


def _pattern(fmt: str) -> str:
    """The "short" format: the medium date with a 24-hour time ("Dec 3, 2026, 14:05",
    "2026年12月3日 14:05"); Babel's own short form ("12/3/26") reads ambiguously."""
    if fmt != "short":
        return fmt
    locale = get_locale()
    glue = str(locale.datetime_formats["medium"])
    return glue.replace("{1}", locale.date_formats["medium"].pattern).replace("{0}", "HH:mm")
