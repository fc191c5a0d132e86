"""Configuration classes, read from the environment."""

import os
from datetime import timedelta
from pathlib import Path

INSTANCE_DIR = Path(__file__).resolve().parent.parent / "instance"

# Development-only values. ProductionConfig refuses to start while any of them is in use.
DEV_SECRET_KEY = "dev-only-secret-key-change-me"
DEV_ENCRYPTION_KEY = "ZGV2LW9ubHktZW5jcnlwdGlvbi1rZXktY2hhbmdlLW0="
DEV_WECHAT = {
    "WECHAT_COMPONENT_APPID": "wx3a1b5c7d9e0f2468",
    "WECHAT_COMPONENT_APPSECRET": "sandbox0appsecret0do0not0use0in0prod",
    "WECHAT_TOKEN": "grantdesksandboxtoken",
    "WECHAT_ENCODING_AES_KEY": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
}


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _env_int(name: str, default: int) -> int:
    return int(_env(name, str(default)))


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def default_database_url() -> str:
    return f"sqlite:///{INSTANCE_DIR / 'grantdesk.sqlite'}"


class Config:
    """Settings shared by every environment."""

    ENV_NAME = "base"
    SECRET_KEY = _env("SECRET_KEY", DEV_SECRET_KEY)
    SQLALCHEMY_DATABASE_URI = _env("DATABASE_URL", default_database_url())
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"pool_pre_ping": True}
    # Newest key first; older keys still decrypt until `flask rotate-keys` re-encrypts.
    GRANTDESK_ENCRYPTION_KEYS = _split(_env("GRANTDESK_ENCRYPTION_KEYS", DEV_ENCRYPTION_KEY))

    WECHAT_COMPONENT_APPID = _env("WECHAT_COMPONENT_APPID", DEV_WECHAT["WECHAT_COMPONENT_APPID"])
    WECHAT_COMPONENT_APPSECRET = _env(
        "WECHAT_COMPONENT_APPSECRET", DEV_WECHAT["WECHAT_COMPONENT_APPSECRET"]
    )
    WECHAT_TOKEN = _env("WECHAT_TOKEN", DEV_WECHAT["WECHAT_TOKEN"])
    WECHAT_ENCODING_AES_KEY = _env("WECHAT_ENCODING_AES_KEY", DEV_WECHAT["WECHAT_ENCODING_AES_KEY"])
    WECHAT_PREVIOUS_ENCODING_AES_KEY = _env("WECHAT_PREVIOUS_ENCODING_AES_KEY")
    # The default platform's name in the console and the wizard (its AppID when unset).
    PLATFORM_DEFAULT_NAME = _env("PLATFORM_DEFAULT_NAME")
    # How long a process keeps the other platforms' keys before reading the table again.
    PLATFORM_CACHE_SECONDS = _env_int("PLATFORM_CACHE_SECONDS", 10)
    WECHAT_API_BASE = _env("WECHAT_API_BASE", "https://api.weixin.qq.com")
    WECHAT_MP_BASE = _env("WECHAT_MP_BASE", "https://mp.weixin.qq.com")
    WECHAT_OPEN_BASE = _env("WECHAT_OPEN_BASE", "https://open.weixin.qq.com")
    # Seconds to connect, then to wait for WeChat's answer ("3.05,10"); a timeout is retried.
    WECHAT_TIMEOUT = tuple(float(part) for part in _env("WECHAT_TIMEOUT", "3.05,10").split(","))

    # Our public origin, used in links that leave the site (QR codes, redirect_uri).
    PROVIDER_NAME = _env("PROVIDER_NAME")
    # Development aid: where the sandbox's control API lives (staff health shows its checks).
    SANDBOX_CONTROL_URL = _env("SANDBOX_CONTROL_URL")
    PUBLIC_BASE_URL = _env("PUBLIC_BASE_URL", "http://127.0.0.1:5000")
    REDIS_URL = _env("REDIS_URL")
    RATELIMIT_STORAGE_URI = _env("RATELIMIT_STORAGE_URI", _env("REDIS_URL", "memory://"))
    RATELIMIT_HEADERS_ENABLED = True
    LOGIN_RATE_LIMIT = _env("LOGIN_RATE_LIMIT", "5 per minute;20 per hour")
    # Views of one public /connect/<token> page (each mints a pre_auth_code from the daily quota).
    CONNECT_LINK_RATE_LIMIT = _env("CONNECT_LINK_RATE_LIMIT", "10 per minute;100 per day")
    # Failed sign-ins: per account from one address (tight), per client address (loose: an office
    # behind NAT), and per account in total (a backstop against many addresses; keep it above the
    # per-address hourly figure so that one address alone can never lock others out).
    LOGIN_ACCOUNT_RATE_LIMIT = _env("LOGIN_ACCOUNT_RATE_LIMIT", LOGIN_RATE_LIMIT)
    LOGIN_ACCOUNT_TOTAL_RATE_LIMIT = _env("LOGIN_ACCOUNT_TOTAL_RATE_LIMIT", "100 per hour")
    LOGIN_ADDRESS_RATE_LIMIT = _env("LOGIN_ADDRESS_RATE_LIMIT", "50 per hour")
    # Proxy hops in front of the app (e.g. 1 behind nginx); their X-Forwarded-* are believed.
    GRANTDESK_TRUSTED_PROXIES = _env_int("GRANTDESK_TRUSTED_PROXIES", 0)

    # Credential custody (issue #5): refresh the component token this long before it expires;
    # a 40001 on a token younger than FOREIGN_REFRESH_WINDOW means someone else refreshed it.
    COMPONENT_TOKEN_REFRESH_AHEAD = _env_int("COMPONENT_TOKEN_REFRESH_AHEAD", 600)
    COMPONENT_TOKEN_LEASE_SECONDS = _env_int("COMPONENT_TOKEN_LEASE_SECONDS", 60)
    COMPONENT_TOKEN_WAIT_SECONDS = _env_int("COMPONENT_TOKEN_WAIT_SECONDS", 20)
    FOREIGN_REFRESH_WINDOW = _env_int("FOREIGN_REFRESH_WINDOW", 300)
    TICKET_SILENCE_ALERT_SECONDS = _env_int("TICKET_SILENCE_ALERT_SECONDS", 20 * 60)
    START_PUSH_TICKET_MIN_INTERVAL = _env_int("START_PUSH_TICKET_MIN_INTERVAL", 30 * 60)
    INTAKE_MAX_BODY_BYTES = _env_int("INTAKE_MAX_BODY_BYTES", 64 * 1024)
    INBOX_MAX_ATTEMPTS = _env_int("INBOX_MAX_ATTEMPTS", 8)
    # Grants and tokens (issue #6): the authorizer-token sweep, and the provider's webhook.
    AUTHORIZER_SWEEP_BATCH = _env_int("AUTHORIZER_SWEEP_BATCH", 200)
    # Threads waiting on WeChat; one thread per sweep writes, so more add no DB contention.
    AUTHORIZER_SWEEP_CONCURRENCY = _env_int("AUTHORIZER_SWEEP_CONCURRENCY", 16)
    AUTHORIZER_SWEEP_LEASE_SECONDS = _env_int("AUTHORIZER_SWEEP_LEASE_SECONDS", 60)
    GRANTDESK_WEBHOOK_URL = _env("GRANTDESK_WEBHOOK_URL")
    GRANTDESK_WEBHOOK_SECRET = _env("GRANTDESK_WEBHOOK_SECRET")
    # Operations (issue #13): alert channels, metrics, logs.
    GRANTDESK_ALERT_WECOM_URL = _env("GRANTDESK_ALERT_WECOM_URL")
    GRANTDESK_ALERT_EMAILS = _split(_env("GRANTDESK_ALERT_EMAILS"))
    GRANTDESK_ALERT_WEBHOOK_URL = _env("GRANTDESK_ALERT_WEBHOOK_URL")
    GRANTDESK_ALERT_WEBHOOK_SECRET = _env(
        "GRANTDESK_ALERT_WEBHOOK_SECRET", _env("GRANTDESK_WEBHOOK_SECRET")
    )
    GRANTDESK_ALERT_REMIND_MINUTES = _env_int("GRANTDESK_ALERT_REMIND_MINUTES", 60)
    GRANTDESK_METRICS_TOKEN = _env("GRANTDESK_METRICS_TOKEN")
    GRANTDESK_LOG_FORMAT = _env("GRANTDESK_LOG_FORMAT", "text")
    # Message relay (issue #15): WeChat waits 5 s for a passive reply; keep a margin for crypto.
    RELAY_REPLY_TIMEOUT = float(_env("RELAY_REPLY_TIMEOUT", "4.0"))
    RELAY_RETENTION_HOURS = _env_int("RELAY_RETENTION_HOURS", 72)
    RELAY_MAX_ATTEMPTS = _env_int("RELAY_MAX_ATTEMPTS", 8)  # async: about an hour, then dead
    RELAY_DELIVERY_TIMEOUT = float(_env("RELAY_DELIVERY_TIMEOUT", "10.0"))  # async, per attempt
    RELAY_OUTBOX_CONCURRENCY = _env_int("RELAY_OUTBOX_CONCURRENCY", 16)  # parallel sends/process
    # A stored async message wakes its process's outbox drainer (delivery within milliseconds);
    # off, deliveries wait for the `relay_outbox` job's next run.
    RELAY_OUTBOX_WAKE = _env("RELAY_OUTBOX_WAKE", "true").lower() not in ("0", "false", "no", "off")
    # Per-job schedule overrides, "name=seconds,..." (the worker and `rq cron` both read it).
    JOB_INTERVALS = {
        name.strip(): int(seconds)
        for name, _, seconds in (
            item.partition("=") for item in _split(_env("GRANTDESK_JOB_INTERVALS"))
        )
    }

    BABEL_DEFAULT_LOCALE = "zh_CN"
    BABEL_DEFAULT_TIMEZONE = "Asia/Shanghai"
    LANGUAGES = {"zh_CN": "简体中文", "en": "English"}
    INVITATION_TTL_HOURS = _env_int("INVITATION_TTL_HOURS", 72)
    # Outgoing email (issue #12): without MAIL_SERVER messages are recorded as skipped.
    MAIL_SERVER = _env("MAIL_SERVER")
    MAIL_PORT = _env_int("MAIL_PORT", 587)
    MAIL_USE_TLS = _env("MAIL_USE_TLS", "true").lower() in ("1", "true", "yes", "on")
    MAIL_USERNAME = _env("MAIL_USERNAME")
    MAIL_PASSWORD = _env("MAIL_PASSWORD")
    MAIL_FROM = _env("MAIL_FROM", "Grantdesk <noreply@grantdesk.invalid>")
    MAIL_TIMEOUT_SECONDS = _env_int("MAIL_TIMEOUT_SECONDS", 20)
    PASSWORD_RESET_TTL_MINUTES = _env_int("PASSWORD_RESET_TTL_MINUTES", 60)
    PASSWORD_RESET_RATE_LIMIT = _env("PASSWORD_RESET_RATE_LIMIT", "3 per hour")
    PASSWORD_RESET_CLIENT_RATE_LIMIT = _env("PASSWORD_RESET_CLIENT_RATE_LIMIT", "20 per hour")
    # Staff two-factor sign-in (issue #12): "required" sends staff without an authenticator to
    # enrollment before any console page; "optional" lets them choose (demo stays two clicks).
    GRANTDESK_STAFF_MFA = _env("GRANTDESK_STAFF_MFA", "optional")
    MFA_RATE_LIMIT = _env("MFA_RATE_LIMIT", "5 per minute;30 per hour")

    # Merchant wizard (issue #7): the sets our platform is configured with on WeChat, and the
    # sets the provider needs per account type (pre-selected, and flagged when missing).
    PLATFORM_PERMISSION_SETS = _split(
        _env("PLATFORM_PERMISSION_SETS", "1,2,3,4,7,11,15,17,18,19,30")
    )
    REQUIRED_PERMISSION_SETS_OFFICIAL_ACCOUNT = _split(
        _env("REQUIRED_PERMISSION_SETS_OFFICIAL_ACCOUNT", "1,2,3")
    )
    REQUIRED_PERMISSION_SETS_MINI_PROGRAM = _split(
        _env("REQUIRED_PERMISSION_SETS_MINI_PROGRAM", "17,18")
    )

    WTF_CSRF_TIME_LIMIT = None  # tied to the session instead of a clock
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_HTTPONLY = True
    # Sign-in sessions (server-side): idle ones end after these hours; remembered devices last
    # REMEMBER_COOKIE_DURATION after their last use.
    GRANTDESK_SESSION_IDLE_HOURS = _env_int("GRANTDESK_SESSION_IDLE_HOURS", 12)
    REMEMBER_COOKIE_DURATION = timedelta(days=_env_int("GRANTDESK_REMEMBER_DAYS", 30))
    REMEMBER_COOKIE_SAMESITE = "Lax"
    TEMPLATES_STRICT_UNDEFINED = False


class DevelopmentConfig(Config):
    """Local development and the demo."""

    ENV_NAME = "development"
    DEBUG = True
    TEMPLATES_STRICT_UNDEFINED = True


class TestConfig(Config):
    """The test suite: a throwaway database, fast hashing, no rate limit surprises."""

    ENV_NAME = "test"
    TESTING = True
    TEMPLATES_STRICT_UNDEFINED = True
    SQLALCHEMY_DATABASE_URI = _env("TEST_DATABASE_URL", "sqlite://")
    RATELIMIT_STORAGE_URI = "memory://"
    PASSWORD_HASH_FAST = True
    # Tests move the clock by days for other features; sign-in expiry tests set their own.
    GRANTDESK_SESSION_IDLE_HOURS = 24 * 14
    MAIL_SERVER = None  # tests that send mail point it at their own SMTP server
    RELAY_OUTBOX_WAKE = False  # tests drain the relay outbox themselves (or turn this on)


class ProductionConfig(Config):
    """Production: secure cookies, and no default secrets."""

    ENV_NAME = "production"
    SESSION_COOKIE_SECURE = True
    REMEMBER_COOKIE_SECURE = True
    PREFERRED_URL_SCHEME = "https"
    GRANTDESK_STAFF_MFA = _env("GRANTDESK_STAFF_MFA", "required")


CONFIGS = {
    "development": DevelopmentConfig,
    "test": TestConfig,
    "production": ProductionConfig,
}


class InsecureConfigError(RuntimeError):
    """Raised when production would start with a missing or default secret."""


def check_production_secrets(config: dict) -> None:
    """Refuse to run production with development secrets or without them."""
    problems = []
    if config.get("SECRET_KEY") in (None, "", DEV_SECRET_KEY):
        problems.append("SECRET_KEY")
    keys = config.get("GRANTDESK_ENCRYPTION_KEYS") or []
    if not keys or DEV_ENCRYPTION_KEY in keys:
        problems.append("GRANTDESK_ENCRYPTION_KEYS")
    for name, dev_value in DEV_WECHAT.items():
        if config.get(name) in (None, "", dev_value):
            problems.append(name)
    if problems:
        raise InsecureConfigError(
            "Refusing to start in production with missing or default settings: "
            + ", ".join(problems)
        )


def load_config(app, config=None) -> None:
    """Load a config class (or its name, or a dict of overrides) and check production secrets."""
    overrides = config if isinstance(config, dict) else {}
    if config is None or isinstance(config, dict):
        config = overrides.get("ENV_NAME") or os.environ.get("GRANTDESK_CONFIG", "development")
    if isinstance(config, str):
        config = CONFIGS[config]
    app.config.from_object(config)
    app.config.update(overrides)
    if app.config.get("GRANTDESK_WEBHOOK_URL") and not app.config.get("GRANTDESK_WEBHOOK_SECRET"):
        # Unsigned notifications could be forged by anyone who learns the URL.
        raise InsecureConfigError("GRANTDESK_WEBHOOK_URL is set without GRANTDESK_WEBHOOK_SECRET")
    if app.config.get("GRANTDESK_STAFF_MFA") not in ("required", "optional"):
        raise ValueError("GRANTDESK_STAFF_MFA must be 'required' or 'optional'")
    if app.config.get("GRANTDESK_ALERT_WEBHOOK_URL") and not app.config.get(
        "GRANTDESK_ALERT_WEBHOOK_SECRET"
    ):
        raise InsecureConfigError(
            "GRANTDESK_ALERT_WEBHOOK_URL is set without GRANTDESK_ALERT_WEBHOOK_SECRET"
        )
    if app.config["ENV_NAME"] == "production":
        check_production_secrets(app.config)
