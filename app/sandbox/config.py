"""Sandbox settings: read from the environment, overridable by `create_app(config)`."""

import os

# The same dev defaults the portal uses (app/config.py), so both sides agree out of the box.
DEV_WECHAT = {
    "WECHAT_COMPONENT_APPID": "wx3a1b5c7d9e0f2468",
    "WECHAT_COMPONENT_APPSECRET": "sandbox0appsecret0do0not0use0in0prod",
    "WECHAT_TOKEN": "grantdesksandboxtoken",
    "WECHAT_ENCODING_AES_KEY": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
}

# Daily call limits per API name (WeChat does not publish them; 10 000/day was observed for the
# token API). Names are the path after /cgi-bin/component/ (or /cgi-bin/).
DEFAULT_QUOTAS = {
    "api_component_token": 10000,
    "api_create_preauthcode": 10000,
    "api_query_auth": 10000,
    "api_authorizer_token": 10000,
    "api_get_authorizer_info": 10000,
    "api_get_authorizer_list": 10000,
    "message/custom/send": 10000,
}


def _env(name: str, default=None):
    value = os.environ.get(name)
    return default if value in (None, "") else value


def _bool(value) -> bool:
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def parse_ip_list(value) -> list[str]:
    """A whitelist from "a, b" or a list; empty = every client address is allowed."""
    if isinstance(value, str):
        value = value.split(",")
    return [str(item).strip() for item in value or [] if str(item).strip()]


def load_config() -> dict:
    """Return the sandbox configuration from the environment (with demo defaults)."""
    return {
        "SECRET_KEY": _env("SANDBOX_SECRET_KEY", "sandbox-dev-secret-not-for-production"),
        # Browsers share cookies across ports of one host: on 127.0.0.1 the sandbox's session
        # cookie must not overwrite the portal's (which would sign the merchant out).
        "SESSION_COOKIE_NAME": "wechat_sandbox_session",
        "SQLALCHEMY_DATABASE_URI": _env(
            "SANDBOX_DATABASE_URL", "sqlite:///" + os.path.abspath("instance/sandbox.sqlite")
        ),
        "SQLALCHEMY_ENGINE_OPTIONS": {},
        **{name: _env(name, value) for name, value in DEV_WECHAT.items()},
        "SANDBOX_EVENT_URL": _env("SANDBOX_EVENT_URL", "http://127.0.0.1:5000/wechat/events"),
        "SANDBOX_MESSAGE_URL": _env(
            "SANDBOX_MESSAGE_URL", "http://127.0.0.1:5000/wechat/messages/$APPID$"
        ),
        "SANDBOX_INITIATING_DOMAIN": _env("SANDBOX_INITIATING_DOMAIN", "127.0.0.1:5000"),
        "SANDBOX_RELAX_REFERER": _bool(_env("SANDBOX_RELAX_REFERER", "0")),
        "SANDBOX_TICKET_INTERVAL": float(_env("SANDBOX_TICKET_INTERVAL", "600")),
        "SANDBOX_SYNC_PUSHES": _bool(_env("SANDBOX_SYNC_PUSHES", "0")),
        "SANDBOX_PUSH_TIMEOUT": float(_env("SANDBOX_PUSH_TIMEOUT", "5")),
        "SANDBOX_PUSH_ATTEMPTS": int(_env("SANDBOX_PUSH_ATTEMPTS", "3")),
        "SANDBOX_PUSH_RETRY_DELAY": float(_env("SANDBOX_PUSH_RETRY_DELAY", "1")),
        # Seconds WeChat waits for each attempt of a user message (3 attempts, reference §2.4).
        "SANDBOX_MESSAGE_TIMEOUT": float(_env("SANDBOX_MESSAGE_TIMEOUT", "5")),
        "SANDBOX_RELEASE_WAIT": float(_env("SANDBOX_RELEASE_WAIT", "10")),
        "SANDBOX_SEED": int(_env("SANDBOX_SEED", "20240601")),
        "SANDBOX_USERS": int(_env("SANDBOX_USERS", "6")),
        "SANDBOX_ACCOUNTS_PER_USER": int(_env("SANDBOX_ACCOUNTS_PER_USER", "3")),
        # Permission sets the platform configured on WeChat's console ('|' or ',' separated).
        "SANDBOX_PERMISSION_SETS": _env("SANDBOX_PERMISSION_SETS", "1,2,3,4,7,11,15,17,18,19,30"),
        "SANDBOX_QUOTAS": dict(DEFAULT_QUOTAS),
        "SANDBOX_CLEAR_QUOTA_MONTHLY": 10,
        # The public base URL used in head_img/qrcode_url links; None = the request's host.
        "SANDBOX_PUBLIC_URL": _env("SANDBOX_PUBLIC_URL"),
        "WTF_CSRF_TIME_LIMIT": None,
        # How long a `{"timeout": true}` endpoint fault holds a request (longer than clients wait).
        # The platform's IP whitelist: component APIs from other client addresses get 61004.
        "SANDBOX_IP_WHITELIST": parse_ip_list(_env("SANDBOX_IP_WHITELIST", "")),
        "SANDBOX_FAULT_HANG": float(_env("SANDBOX_FAULT_HANG", "30")),
    }
