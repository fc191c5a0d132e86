"""One filter keeps codes, tickets, tokens and keys out of every log line.

Werkzeug's and gunicorn's access logs write whole request lines (`?auth_code=…`), urllib3 logs
whole URLs (`?component_access_token=…`), and a message may quote a payload. The filter masks
the values of parameters named `auth_code`, `pre_auth_code`, `code`, `ticket`, `token`, `key`
(and `<something>_token` etc.) in URLs, form bodies, JSON and XML, plus bearer path segments.
"""

import logging
import re

MASK = "***"
_NAMES = r"(?:\w+_)?(?:auth_code|code|ticket|token|key|secret|appsecret|password)"
_PATTERNS = [
    # name=value in query strings, form bodies and messages (also percent-encoded "=")
    (
        re.compile(rf"(?i)(?:(?<![\w-])|(?<=%3F)|(?<=%26))({_NAMES})(=|%3D)[^&\s\"'#;,)]+"),
        rf"\1\2{MASK}",
    ),
    # "name": "value" in JSON, 'name': 'value' in reprs
    (re.compile(rf"(?i)([\"']{_NAMES}[\"']\s*:\s*)([\"'])[^\"']*\2"), rf"\1\2{MASK}\2"),
    # <ComponentVerifyTicket>value</ComponentVerifyTicket>, <AuthorizationCode>… in XML
    (
        re.compile(r"<(\w*(?:Ticket|Code|Token|Key))>(?:<!\[CDATA\[.*?\]\]>|[^<]*)</\1>"),
        rf"<\1>{MASK}</\1>",
    ),
    # Links whose path is the secret: invitations and merchant connect links
    (re.compile(r"(/(?:invitations|connect)/)[A-Za-z0-9_-]{16,}"), rf"\1{MASK}"),
]


# Settings whose values must never appear in a log line or a notification, whatever the context.
SECRET_SETTINGS = (
    "SECRET_KEY",
    "WECHAT_COMPONENT_APPSECRET",
    "WECHAT_TOKEN",
    "WECHAT_ENCODING_AES_KEY",
    "GRANTDESK_WEBHOOK_SECRET",
    "GRANTDESK_ALERT_WEBHOOK_SECRET",
    "GRANTDESK_METRICS_TOKEN",
)


def configured_secrets(config) -> list[str]:
    """The secret values in a Flask config (long enough to be masked without false hits)."""
    values = [config.get(name) for name in SECRET_SETTINGS]
    values += list(config.get("GRANTDESK_ENCRYPTION_KEYS") or [])
    return [value for value in values if isinstance(value, str) and len(value) >= 6]


def mask_secrets(text: str, known: list[str] | tuple = ()) -> str:
    """`text` with every secret value (and each of the `known` secret strings) replaced by ***."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    for secret in known:
        text = text.replace(secret, MASK)
    return text


class SecretMaskingFilter(logging.Filter):
    """Rewrites a record's message with its secrets masked (the arguments are merged in)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_secrets_masked", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to logging's own error report
            return True
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_secrets(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = mask_secrets(record.exc_text)
        record._secrets_masked = True
        return True


SECRET_FILTER = SecretMaskingFilter()
# Flask's app logger, the dev server's access log, gunicorn's error and access logs.
FILTERED_LOGGERS = ("app", "flask.app", "werkzeug", "gunicorn.error", "gunicorn.access")
_factory_installed = False


def install_secret_masking(*extra_loggers: logging.Logger) -> None:
    """Put the filter on the named loggers and on every record made in this process.

    A logger's filters see only records made by that very logger, not by its children
    (`app.services.x`, `urllib3.connectionpool`), so records are masked when they are made too.
    """
    global _factory_installed
    for logger in [*(logging.getLogger(n) for n in FILTERED_LOGGERS), *extra_loggers]:
        if SECRET_FILTER not in logger.filters:
            logger.addFilter(SECRET_FILTER)
    if not _factory_installed:
        make_record = logging.getLogRecordFactory()

        def make_masked_record(*args, **kwargs):
            record = make_record(*args, **kwargs)
            SECRET_FILTER.filter(record)
            return record

        logging.setLogRecordFactory(make_masked_record)
        _factory_installed = True
