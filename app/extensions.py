"""Flask extensions, created unbound and initialised in create_app."""

import requests
from flask_babel import Babel
from flask_htmx import HTMX
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from requests.adapters import HTTPAdapter

from app.models.base import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate(render_as_batch=True, compare_type=True)
login_manager = LoginManager()
csrf = CSRFProtect()
babel = Babel()
htmx = HTMX()
limiter = Limiter(key_func=get_remote_address, default_limits=[])


def wechat_client():
    """The ComponentClient for this app (WECHAT_* settings), built once and cached per app."""
    from flask import current_app

    from app.wechat.client import ComponentClient

    cache = current_app.extensions.setdefault("grantdesk.wechat", {})
    if "client" not in cache:
        config = current_app.config
        # The sweep's threads plus request threads refreshing on demand share one pool.
        pool_size = config["AUTHORIZER_SWEEP_CONCURRENCY"] + 8
        cache["client"] = ComponentClient(
            config["WECHAT_COMPONENT_APPID"],
            config["WECHAT_COMPONENT_APPSECRET"],
            api_base=config["WECHAT_API_BASE"],
            timeout=_timeout(config.get("WECHAT_TIMEOUT", (3.05, 10))),
            session=_http_session(config["WECHAT_API_BASE"], pool_size),
        )
    return cache["client"]


def _timeout(value) -> float | tuple[float, float]:
    """WECHAT_TIMEOUT as requests takes it: one number for both, or (connect, read)."""
    parts = tuple(float(part) for part in (value if isinstance(value, list | tuple) else [value]))
    return parts[0] if len(parts) == 1 else (parts[0], parts[1])


def _http_session(api_base: str, pool_size: int) -> requests.Session:
    """A pooled session for WeChat; proxy and CA settings from the environment, read once."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    from app.metrics import observe_wechat_response

    session.hooks["response"].append(observe_wechat_response)  # grantdesk_wechat_api_*
    # requests would otherwise re-read them (and ~/.netrc) on every call: ~0.4 ms CPU each.
    settings = session.merge_environment_settings(api_base, {}, None, None, None)
    session.proxies.update(settings["proxies"])
    session.verify = settings["verify"]
    session.trust_env = False
    return session


def message_crypto():
    """The MessageCrypto for this app's token, EncodingAESKey (and previous key) and appid."""
    from flask import current_app

    from app.wechat.crypto import MessageCrypto

    cache = current_app.extensions.setdefault("grantdesk.wechat", {})
    if "crypto" not in cache:
        config = current_app.config
        cache["crypto"] = MessageCrypto(
            config["WECHAT_TOKEN"],
            config["WECHAT_ENCODING_AES_KEY"],
            config["WECHAT_COMPONENT_APPID"],
            config.get("WECHAT_PREVIOUS_ENCODING_AES_KEY"),
        )
    return cache["crypto"]
