"""The world's third-party platforms: lookup, registration, configuration, release state.

The first platform (lowest id) is the default: seeded from the WECHAT_* / SANDBOX_* settings,
and the one every control call acts on without `component_appid`. More are added with
`POST /sandbox/api/platforms`; each has its own credentials, URLs, set offer, IP whitelist,
quotas, ticket pushes, faults, release state and authorization test list.
"""

import re
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import func, select

from app.sandbox import catalog, clock, tokens, world
from app.sandbox.config import parse_ip_list
from app.sandbox.errors import ConsentError
from app.sandbox.models import FIRST_PLATFORM_ID, Account, Authorization, Platform, db
from app.wechat import permissions
from app.wechat.crypto import MessageCrypto
from app.wechat.errors import CryptoError

RELEASE_STATES = ("testing", "released")
# WeChat's console rules for the message token (3-32 letters or digits) and the
# EncodingAESKey (43 letters or digits); AppIDs are "wx" and 16 more characters.
_APPID = re.compile(r"^wx[0-9A-Za-z]{14,30}$")
_TOKEN = re.compile(r"^[A-Za-z0-9]{3,32}$")
_AES_KEY = re.compile(r"^[A-Za-z0-9]{43}$")
_DOMAIN = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")

REQUIRED = (
    "appid",
    "secret",
    "token",
    "encoding_aes_key",
    "event_url",
    "message_url",
    "initiating_domain",
    "permission_set_ids",
)
OPTIONAL = ("name", "release_state", "test_accounts", "ip_whitelist")
# What `POST /sandbox/api/platform` may change on an existing platform (never its appid).
CONFIGURABLE = (
    "name",
    "secret",
    "token",
    "encoding_aes_key",
    "event_url",
    "message_url",
    "initiating_domain",
    "permission_set_ids",
    "ip_whitelist",
)


# --- lookup -----------------------------------------------------------------------------------


def default() -> Platform:
    """The first platform: what control calls act on without `component_appid`."""
    return db.session.get(Platform, db.session.execute(FIRST_PLATFORM_ID).scalar_one())


def all_platforms() -> list[Platform]:
    """Every platform, the default first."""
    return list(db.session.execute(select(Platform).order_by(Platform.id)).scalars())


def by_appid(appid) -> Platform | None:
    """The platform with this component AppID, if any."""
    if not isinstance(appid, str) or not appid:
        return None
    return db.session.execute(select(Platform).filter_by(appid=appid)).scalar_one_or_none()


def require(appid) -> Platform:
    """The platform a control call names (`component_appid`; absent = the default one)."""
    if appid is None or appid == "":
        return default()
    if not isinstance(appid, str):
        raise ConsentError("bad_value", "component_appid is a string")
    platform = by_appid(appid)
    if platform is None:
        raise ConsentError("unknown_platform", f"no platform with component_appid {appid!r}")
    return platform


def display_name(platform: Platform) -> str:
    """What WeChat's pages call the platform."""
    return platform.name or platform.appid


def crypto(platform: Platform) -> MessageCrypto:
    """The platform's message crypto (its token, EncodingAESKey and component AppID)."""
    return MessageCrypto(platform.token, platform.encoding_aes_key, platform.appid)


# --- release state and the authorization test list --------------------------------------------


def is_testing(platform: Platform) -> bool:
    """Not yet released network-wide (全网发布): only test accounts may authorize it."""
    return platform.release_state == "testing"


def may_authorize(platform: Platform, account: Account) -> bool:
    """Whether the platform's release state lets this account authorize it: released, or the
    account is on its test list (by AppID or original id), or it is one of WeChat's release-test
    accounts (WeChat adds those to every platform for the release check)."""
    if not is_testing(platform) or account.release_test:
        return True
    listed = set(platform.test_accounts or [])
    return account.appid in listed or account.user_name in listed


def set_release(platform: Platform, body: dict) -> Platform:
    """`{state: "released" | "testing", test_accounts: [appid, …]}` (either or both)."""
    _refuse_unknown(body, ("state", "test_accounts"))
    if "state" not in body and "test_accounts" not in body:
        raise ConsentError("missing_field", "give state and/or test_accounts")
    state = _release_state(body["state"]) if "state" in body else None
    accounts = _test_accounts(body["test_accounts"]) if "test_accounts" in body else None
    if accounts is not None:
        platform.test_accounts = accounts
    if state == "released":
        publish(platform)
    elif state == "testing":
        platform.release_state = state
    return platform


def publish(platform: Platform) -> None:
    """A passed release check with `publish`: the platform is released network-wide."""
    platform.release_state, platform.released_at = "released", clock.now()


# --- registration and configuration -----------------------------------------------------------


def create(body: dict) -> Platform:
    """Register a platform (validated; a duplicate AppID is refused). WeChat's release-test
    accounts are authorized to it at once, as WeChat does for every platform."""
    if not isinstance(body, dict):
        raise ConsentError("bad_value", "the body is a JSON object")
    _refuse_unknown(body, REQUIRED + OPTIONAL)
    missing = [key for key in REQUIRED if body.get(key) in (None, "", [])]
    if missing:
        raise ConsentError("missing_field", f"{missing[0]} is required")
    appid = body["appid"]
    if not isinstance(appid, str) or not _APPID.match(appid):
        raise ConsentError("bad_appid", "appid is 'wx' followed by 14-30 letters or digits")
    if by_appid(appid) is not None:
        raise ConsentError("platform_exists", f"a platform with appid {appid} already exists")
    values = _validated(body)
    platform = Platform(
        appid=appid,
        name=values.get("name"),
        secret=values["secret"],
        token=values["token"],
        encoding_aes_key=values["encoding_aes_key"],
        event_url=values["event_url"],
        message_url=values["message_url"],
        initiating_domain=values["initiating_domain"],
        permission_set_ids=values["permission_set_ids"],
        ticket_push_running=True,
        quota_clears={},
        release_state=_release_state(body.get("release_state", "released")),
        released_at=None,
        test_accounts=_test_accounts(body.get("test_accounts", [])),
        ip_whitelist=values.get("ip_whitelist", []),
        quotas=dict(current_app.config["SANDBOX_QUOTAS"]),
    )
    if platform.release_state == "released":
        platform.released_at = clock.now()
    db.session.add(platform)
    db.session.flush()
    world.authorize_release_test_accounts(platform)
    return platform


def configure(platform: Platform, body: dict) -> Platform:
    """Change an existing platform's URLs, set offer, whitelist, name or keys (validated first:
    a refused request changes nothing)."""
    _refuse_unknown(body, CONFIGURABLE)
    for key, value in _validated(body).items():
        setattr(platform, key, value)
    return platform


def _refuse_unknown(body: dict, allowed) -> None:
    unknown = [key for key in body if key not in allowed]
    if unknown:
        raise ConsentError("unknown_field", f"cannot configure {unknown[0]!r}")


def _validated(body: dict) -> dict:
    """The given fields, checked and normalized; ConsentError names the first bad one."""
    checks = {
        "name": lambda v: _text(v, "name", 64),
        "secret": lambda v: _text(v, "secret", 128),
        "token": lambda v: _pattern(v, "token", _TOKEN, "3-32 letters or digits"),
        "encoding_aes_key": _aes_key,
        "event_url": lambda v: _url(v, "event_url"),
        "message_url": lambda v: _url(v, "message_url"),
        "initiating_domain": _domain,
        "permission_set_ids": _set_ids,
        "ip_whitelist": _ip_whitelist,
    }
    return {key: checks[key](body[key]) for key in checks if key in body}


def _text(value, key: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise ConsentError("bad_value", f"{key} is a non-empty string of at most {limit}")
    return value


def _pattern(value, key: str, pattern: re.Pattern, rule: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise ConsentError("bad_value", f"{key} must be {rule}")
    return value


def _aes_key(value) -> str:
    key = _pattern(value, "encoding_aes_key", _AES_KEY, "43 letters or digits")
    try:
        MessageCrypto("token", key, "wx0000000000000000")
    except (CryptoError, ValueError):
        raise ConsentError("bad_value", "encoding_aes_key is not a valid key") from None
    return key


def _url(value, key: str) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConsentError("bad_value", f"{key} must be an http(s) URL")
    return value


def _domain(value) -> str:
    if not isinstance(value, str) or not _DOMAIN.match(value):
        raise ConsentError(
            "bad_value", "initiating_domain is a host (and port), without scheme or path"
        )
    return value


def _set_ids(value) -> list[int]:
    try:
        ids = world.parse_ids(value)
    except (TypeError, ValueError):
        raise ConsentError("bad_value", "permission_set_ids is a list of set ids") from None
    if not ids:
        raise ConsentError("bad_value", "offer at least one permission set")
    unknown = [i for i in ids if permissions.get(i) is None]
    if unknown:
        raise ConsentError("unknown_sets", f"no such permission sets: {unknown}")
    return ids


def _ip_whitelist(value) -> list[str]:
    if not isinstance(value, list | str):
        raise ConsentError("bad_value", "ip_whitelist is a list of addresses")
    return parse_ip_list(value)


def _release_state(value) -> str:
    if value not in RELEASE_STATES:
        raise ConsentError("bad_value", "state is 'released' or 'testing'")
    return value


def _test_accounts(value) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConsentError("bad_value", "test_accounts is a list of AppIDs (or original ids)")
    return sorted(set(value))


# --- JSON -------------------------------------------------------------------------------------


def platform_json(platform: Platform) -> dict:
    """A platform as the control API shows it (never its secret, token or key)."""
    ticket = tokens.latest_ticket(platform.id)
    return {
        "appid": platform.appid,
        "name": platform.name,
        "default": platform.id == db.session.execute(FIRST_PLATFORM_ID).scalar(),
        "event_url": platform.event_url,
        "message_url": platform.message_url,
        "initiating_domain": platform.initiating_domain,
        "ip_whitelist": list(platform.ip_whitelist or []),
        "permission_set_ids": platform.permission_set_ids,
        "permission_sets": [
            {
                "id": i,
                "name": catalog.name(i),
                "name_en": catalog.name(i, "en"),
                "exclusive": catalog.is_exclusive(i),
            }
            for i in platform.permission_set_ids
        ],
        "ticket_push_running": platform.ticket_push_running,
        "release_state": platform.release_state or "released",
        "released_at": clock.iso(platform.released_at),
        "test_accounts": list(platform.test_accounts or []),
        "ticket": {"value": ticket.value, "issued_at": clock.iso(ticket.issued_at)}
        if ticket
        else None,
        "active_authorizations": db.session.execute(
            select(func.count())
            .select_from(Authorization)
            .filter_by(platform_id=platform.id, status="active")
        ).scalar(),
    }
