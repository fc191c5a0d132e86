"""Logging: request ids on every request, and one JSON object per line with
GRANTDESK_LOG_FORMAT=json (time, level, logger, message, request id, user id, route, status,
duration). Secrets are masked in every line, whatever the format.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime

from flask import Flask, Response, g, has_request_context, request

from app.logging import configured_secrets, mask_secrets

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
request_log = logging.getLogger("grantdesk.request")


def init_app(app: Flask) -> None:
    """Request ids for every request; JSON lines when GRANTDESK_LOG_FORMAT=json."""
    app.before_request(_begin_request)
    app.after_request(_end_request)
    masking = MaskSecrets(configured_secrets(app.config))
    if app.config.get("GRANTDESK_LOG_FORMAT") == "json":
        install_json_handler(masking)


def install_json_handler(masking: logging.Filter, stream=None) -> logging.Handler:
    """Replace the root logger's handlers with one JSON-lines handler (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "grantdesk_json", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.grantdesk_json = True
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestContext())
    handler.addFilter(masking)
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return handler


def _begin_request() -> None:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def _end_request(response: Response) -> Response:
    request_id = g.get("request_id")
    if request_id:
        response.headers[REQUEST_ID_HEADER] = request_id
    started = g.get("request_started")
    if started is not None and request.endpoint not in ("main.healthz", "main.readyz", "metrics"):
        duration = round(time.perf_counter() - started, 6)
        request_log.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={"status": response.status_code, "duration": duration},
        )
    return response


class RequestContext(logging.Filter):
    """Adds request id, user id and route to records logged while a request is handled."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            record.request_id = g.get("request_id")
            record.route = request.url_rule.rule if request.url_rule else None
            record.user_id = _user_id()
        return True


def _user_id() -> int | None:
    from flask_login import current_user

    try:
        return current_user.id if current_user.is_authenticated else None
    except Exception:  # no user loader yet, or the session is unreadable
        return None


class MaskSecrets(logging.Filter):
    """Masks the final message as app/logging.py does, plus the configured secret values."""

    def __init__(self, secrets: list[str] | None = None):
        super().__init__()
        self.secrets = secrets or []

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask(message, self.secrets)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def mask(text: str, secrets: list[str] = ()) -> str:
    return mask_secrets(text, secrets)


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "user_id": getattr(record, "user_id", None),
            "route": getattr(record, "route", None),
            "status": getattr(record, "status", None),
            "duration": getattr(record, "duration", None),
        }
        if record.exc_info:
            entry["exception"] = mask(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def current_request_id() -> str | None:
    """The id of the request being handled (for outgoing calls and error pages)."""
    return g.get("request_id") if has_request_context() else None
