"""The provider's third-party platforms: their keys, clients and the table staff manage.

Which platform the current work is for is `app.current_platform` (re-exported here: `using`,
`current_appid`, `default_appid`, `is_default`); `wechat_client()` and `message_crypto()` are
the current platform's, so single-platform code reads as before.

The default platform's keys come from the configuration (no database read on the hot path);
the others' from the `platforms` table, cached for PLATFORM_CACHE_SECONDS per process.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import requests
from flask import current_app
from requests.adapters import HTTPAdapter
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from app.current_platform import (  # re-exported: callers find the platform's things here
    current_appid,
    default_appid,
    is_default,
    using,
)
from app.extensions import db
from app.models.platform import (
    PLATFORM_ACTIVE,
    PLATFORM_RETIRED,
    RELEASE_RELEASED,
    RELEASE_TESTING,
    Platform,
)
from app.services import DomainError, audit, clock
from app.wechat import permissions
from app.wechat.crypto import MessageCrypto

# A push naming an unknown AppId reloads the table at most this often (an attacker cannot make
# every request read it).
_UNKNOWN_RELOAD_SECONDS = 1.0


class PlatformError(DomainError):
    code = "platform_invalid"


class DuplicatePlatform(PlatformError):
    code = "platform_exists"


class InvalidPermissionSets(PlatformError):
    """Sets not in the catalog (`unknown`), or required but not offered (`not_offered`)."""

    code = "permission_sets_invalid"

    def __init__(self, unknown: list[str], not_offered: list[int]):
        parts = []
        if unknown:
            parts.append("unknown permission sets: " + ", ".join(unknown))
        if not_offered:
            parts.append("required but not offered: " + ", ".join(map(str, not_offered)))
        super().__init__("; ".join(parts))
        self.unknown, self.not_offered = unknown, not_offered


class InvalidTestAccounts(PlatformError):
    """Some test accounts are not appids (`invalid` lists them, as typed)."""

    code = "test_accounts_invalid"

    def __init__(self, invalid: list[str]):
        super().__init__("not appids: " + ", ".join(invalid))
        self.invalid = invalid


@dataclass(frozen=True)
class PlatformKeys:
    """What talking to WeChat as one platform needs (repr never shows a secret)."""

    component_appid: str
    name: str
    appsecret: str = field(repr=False)
    token: str = field(repr=False)
    encoding_aes_key: str = field(repr=False)
    previous_encoding_aes_key: str | None = field(default=None, repr=False)
    active: bool = True
    is_default: bool = False


# --- keys -------------------------------------------------------------------------------------


def _configured() -> PlatformKeys:
    config = current_app.config
    return PlatformKeys(
        component_appid=config["WECHAT_COMPONENT_APPID"],
        name=config.get("PLATFORM_DEFAULT_NAME") or config["WECHAT_COMPONENT_APPID"],
        appsecret=config["WECHAT_COMPONENT_APPSECRET"],
        token=config["WECHAT_TOKEN"],
        encoding_aes_key=config["WECHAT_ENCODING_AES_KEY"],
        previous_encoding_aes_key=config.get("WECHAT_PREVIOUS_ENCODING_AES_KEY"),
        is_default=True,
    )


class _Registry:
    """The platforms table as this process last read it (keys decrypted, in memory only)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.keys: dict[str, PlatformKeys] = {}
        # Each platform's own (offered, required) permission sets, as stored (often empty).
        self.sets: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        self.loaded_at = float("-inf")

    def get(self, component_appid: str) -> PlatformKeys | None:
        ttl = current_app.config["PLATFORM_CACHE_SECONDS"]
        age = time.monotonic() - self.loaded_at
        if age > ttl or (component_appid not in self.keys and age > _UNKNOWN_RELOAD_SECONDS):
            self.reload()
        return self.keys.get(component_appid)

    def reload(self) -> None:
        # A session of its own (read only): the caller may be inside a transaction.
        with self.lock, Session(db.engine) as session, session.begin():
            rows = session.scalars(select(Platform)).all()
            self.keys = {row.component_appid: _keys_of(row) for row in rows}
            self.sets = {row.component_appid: _sets_of(row) for row in rows}
            self.loaded_at = time.monotonic()


def _registry() -> _Registry:
    return current_app.extensions.setdefault("grantdesk.platforms", _Registry())


def forget_cache() -> None:
    """Read the table again on next use (after this process changed a platform)."""
    _registry().loaded_at = float("-inf")


def _sets_of(row: Platform) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return _int_ids(row.offered_set_ids), _int_ids(row.required_set_ids)


def _int_ids(values) -> tuple[int, ...]:
    return tuple(int(v) for v in values or () if str(v).strip().isdigit())


def _keys_of(row: Platform) -> PlatformKeys:
    if is_default(row.component_appid):
        return _configured()
    return PlatformKeys(
        component_appid=row.component_appid,
        name=row.name,
        appsecret=row.appsecret,
        token=row.token,
        encoding_aes_key=row.encoding_aes_key,
        previous_encoding_aes_key=row.previous_encoding_aes_key,
        active=row.active,
    )


def keys(component_appid: str | None = None) -> PlatformKeys | None:
    """The keys of `component_appid` (default: the current platform), None if unknown."""
    appid = component_appid or current_appid()
    if is_default(appid):
        return _configured()
    return _registry().get(appid)


def known(component_appid: str) -> bool:
    """Whether pushes for `component_appid` are ours to open (an active platform)."""
    found = keys(component_appid)
    return found is not None and found.active


def active_appids() -> list[str]:
    """Every active platform's component appid, the default first: what the jobs go through."""
    registry = _registry()
    registry.get(default_appid())
    default = default_appid()
    others = sorted(a for a, k in registry.keys.items() if k.active and a != default)
    return [default, *others]


def each(job: Callable[[], str]) -> str:
    """Run `job` as every active platform in turn; one platform's failure never stops the
    others (the first exception is raised again after all have run). Returns the summary:
    job's own for a single platform, else one "appid: summary" per platform."""
    appids, summaries, failure = active_appids(), [], None
    for appid in appids:
        with using(appid):
            try:
                summaries.append(f"{appid}: {job()}")
            except Exception as exc:  # noqa: BLE001 - re-raised once every platform has run
                db.session.rollback()
                failure = failure or exc
                summaries.append(f"{appid}: failed ({type(exc).__name__})")
    if failure is not None:
        raise failure
    if len(appids) == 1:
        return summaries[0].removeprefix(f"{appids[0]}: ")
    return "; ".join(summaries)


# --- permission sets: what each platform offers and requires ------------------------------------


def _own_sets(component_appid: str | None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The platform's own (offered, required) lists from the registry (no query per call)."""
    appid = component_appid or current_appid()
    registry = _registry()
    registry.get(appid)  # reloads when stale, as for keys
    return registry.sets.get(appid, ((), ()))


def configured_offered_set_ids() -> list[int]:
    """The deployment's default offer (PLATFORM_PERMISSION_SETS)."""
    return list(_int_ids(current_app.config.get("PLATFORM_PERMISSION_SETS")))


def configured_required_set_ids(account_type: str | None) -> list[int]:
    """The deployment's default requirements (REQUIRED_PERMISSION_SETS_<TYPE>)."""
    key = f"REQUIRED_PERMISSION_SETS_{(account_type or '').upper()}"
    return list(_int_ids(current_app.config.get(key)))


def offered_set_ids(component_appid: str | None = None) -> list[int]:
    """The sets a platform (default: the current one) offers: its own list when staff set one,
    else PLATFORM_PERMISSION_SETS."""
    offered = _own_sets(component_appid)[0]
    return list(offered) if offered else configured_offered_set_ids()


def required_set_ids(account_type: str | None, component_appid: str | None = None) -> list[int]:
    """The sets a platform (default: the current one) requires of an account type: its own
    list, restricted to that type's sets in the catalog, when staff set one; else
    REQUIRED_PERMISSION_SETS_<TYPE>. Only sets it offers: one it does not cannot be granted."""
    offered, own = _own_sets(component_appid)
    if own:
        of_type = _catalog_ids(account_type)
        required = [i for i in own if i in of_type]
    else:
        required = configured_required_set_ids(account_type)
    available = set(offered) if offered else set(configured_offered_set_ids())
    return [i for i in required if i in available]


def _catalog_ids(account_type: str | None) -> set[int]:
    if account_type not in permissions.ACCOUNT_TYPES:
        return set()
    return {item.id for item in permissions.for_account_type(account_type)}


def offered_by_any() -> list[int]:
    """Every set some active platform offers (the console's coverage chart)."""
    return sorted({i for appid in active_appids() for i in offered_set_ids(appid)})


# --- clients ----------------------------------------------------------------------------------


def wechat_client():
    """The ComponentClient of the current platform, built once per keys and cached per app."""
    from app.wechat.client import ComponentClient

    found = _required_keys()
    cache = current_app.extensions.setdefault("grantdesk.wechat", {})
    client = cache.get(("client", found))
    if client is None:
        config = current_app.config
        # The sweep's threads plus request threads refreshing on demand share one pool.
        pool_size = config["AUTHORIZER_SWEEP_CONCURRENCY"] + 8
        client = cache[("client", found)] = ComponentClient(
            found.component_appid,
            found.appsecret,
            api_base=config["WECHAT_API_BASE"],
            timeout=_timeout(config.get("WECHAT_TIMEOUT", (3.05, 10))),
            session=_http_session(config["WECHAT_API_BASE"], pool_size),
        )
    return client


def message_crypto() -> MessageCrypto:
    """The MessageCrypto of the current platform: its token, EncodingAESKey (and previous)."""
    return crypto_for(_required_keys())


def crypto_for(found: PlatformKeys) -> MessageCrypto:
    cache = current_app.extensions.setdefault("grantdesk.wechat", {})
    crypto = cache.get(("crypto", found))
    if crypto is None:
        crypto = cache[("crypto", found)] = MessageCrypto(
            found.token,
            found.encoding_aes_key,
            found.component_appid,
            found.previous_encoding_aes_key,
        )
    return crypto


def _required_keys() -> PlatformKeys:
    found = keys()
    if found is None:
        raise PlatformError(f"unknown platform {current_appid()}")
    return found


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


# --- the table --------------------------------------------------------------------------------


def default_row() -> Platform:
    """The default platform's row, created or updated from the WECHAT_* variables in
    db.session (flushed; the caller commits). Only writers call it (start, the CLI, a staff
    edit): reads never write, so no request holds a write the registry's session waits on."""
    configured = _configured()
    row = get(configured.component_appid)
    if row is None:
        row = Platform(component_appid=configured.component_appid, name=configured.name)
        row.status, row.release_state = PLATFORM_ACTIVE, RELEASE_TESTING
        db.session.add(row)
    if not row.is_default or _stored_keys(row) != _keys_tuple(configured):
        _write_keys(row, configured)
        row.is_default, row.status = True, PLATFORM_ACTIVE
    # Exactly one default: a changed WECHAT_COMPONENT_APPID demotes the old one.
    for other in db.session.scalars(
        select(Platform).where(Platform.is_default, Platform.component_appid != row.component_appid)
    ):
        other.is_default = False
    db.session.flush()
    return row


def sync_default_on_start(app) -> None:
    """On start, the WECHAT_* variables create or update the default platform's row (skipped
    while the database has no platforms table, before `flask db upgrade`, or is unreachable)."""
    with app.app_context():
        try:
            if inspect(db.engine).has_table("platforms"):
                default_row()
                db.session.commit()
        except (OperationalError, IntegrityError):  # down now, or another process wrote it
            db.session.rollback()
        finally:
            db.session.remove()


def _keys_tuple(found: PlatformKeys) -> tuple:
    return (found.appsecret, found.token, found.encoding_aes_key, found.previous_encoding_aes_key)


def _stored_keys(row: Platform) -> tuple:
    return (row.appsecret, row.token, row.encoding_aes_key, row.previous_encoding_aes_key)


def _write_keys(row: Platform, found: PlatformKeys) -> None:
    row.appsecret, row.token = found.appsecret, found.token
    row.encoding_aes_key = found.encoding_aes_key
    row.previous_encoding_aes_key = found.previous_encoding_aes_key
    row.updated_at = clock.now()


def all_platforms() -> list[Platform]:
    """Every platform, the default first, then by name. Read only: before the default
    platform's row is written (see `default_row`), an unsaved one stands for it."""
    rows = list(db.session.scalars(select(Platform)))
    if not any(is_default(row.component_appid) for row in rows):
        configured = _configured()
        rows.append(
            Platform(
                component_appid=configured.component_appid, name=configured.name,
                status=PLATFORM_ACTIVE, release_state=RELEASE_TESTING, test_accounts=[],
                offered_set_ids=[], required_set_ids=[], is_default=True,
            )
        )  # fmt: skip
    return sorted(
        rows, key=lambda row: (not is_default(row.component_appid), row.name.lower(), row.id or 0)
    )


def names() -> dict[str, str]:
    """Platform names by component AppID, the default first, when the deployment has several;
    else {} (a one-platform deployment's pages name no platform)."""
    rows = all_platforms()
    return {row.component_appid: row.name for row in rows} if len(rows) > 1 else {}


def get(component_appid: str) -> Platform | None:
    return db.session.scalar(select(Platform).where(Platform.component_appid == component_appid))


def add(
    *,
    component_appid: str,
    appsecret: str,
    token: str,
    encoding_aes_key: str,
    name: str,
    purpose: str | None = None,
    previous_encoding_aes_key: str | None = None,
    offered_set_ids: Iterable = (),
    required_set_ids: Iterable = (),
) -> Platform:
    """Add a platform (the caller commits); raises PlatformError on bad or duplicate input.
    The permission sets it offers and requires: see `set_permission_sets` (empty: the
    configured ones)."""
    component_appid = (component_appid or "").strip()
    _check(component_appid, appsecret, token, encoding_aes_key, previous_encoding_aes_key)
    offered, required = clean_permission_sets(offered_set_ids, required_set_ids)
    if not (name or "").strip():
        raise PlatformError("a name is required")
    if is_default(component_appid) or get(component_appid) is not None:
        raise DuplicatePlatform(f"platform {component_appid} exists already")
    row = Platform(
        component_appid=component_appid,
        name=name.strip()[:64],
        purpose=(purpose or "").strip()[:200] or None,
        appsecret=appsecret,
        token=token,
        encoding_aes_key=encoding_aes_key,
        previous_encoding_aes_key=previous_encoding_aes_key or None,
        offered_set_ids=offered,
        required_set_ids=required,
        status=PLATFORM_ACTIVE,
    )
    db.session.add(row)
    db.session.flush()
    forget_cache()
    return row


def set_status(row: Platform, status: str) -> None:
    """Retire a platform (pushes for it are refused) or make it active again."""
    if status not in (PLATFORM_ACTIVE, PLATFORM_RETIRED):
        raise PlatformError(f"unknown status {status!r}")
    if is_default(row.component_appid) and status == PLATFORM_RETIRED:
        raise PlatformError("the default platform (WECHAT_* variables) cannot be retired")
    row.status, row.updated_at = status, clock.now()
    forget_cache()


def record_release(row: Platform, *, released: bool) -> None:
    """Staff's record of the platform's network-wide release (WeChat has no API for it)."""
    row.release_state = RELEASE_RELEASED if released else RELEASE_TESTING
    row.released_at = clock.now() if released else row.released_at
    row.updated_at = clock.now()


def _check(appid, appsecret, token, aes_key, previous_aes_key) -> None:
    if not looks_like_appid(appid):
        raise PlatformError("the component AppID looks like wx followed by letters and digits")
    if not appsecret or not token:
        raise PlatformError("the AppSecret and the message token are required")
    if not 3 <= len(token) <= 32 or not token.isalnum():
        raise PlatformError("the message token is 3 to 32 letters and digits")
    for key in (aes_key, previous_aes_key or aes_key):
        if not key or len(key) != 43 or not key.isalnum():
            raise PlatformError("an EncodingAESKey is 43 letters and digits")


# --- what staff change in the console (audited, never a key in the log; the caller commits) ----

_APPID = re.compile(r"wx[0-9A-Za-z]{4,62}")
KEY_FIELDS = ("appsecret", "token", "encoding_aes_key")


def looks_like_appid(value: str | None) -> bool:
    """wx followed by letters and digits, 6 to 64 characters in all (as WeChat's appids are)."""
    return _APPID.fullmatch(value or "") is not None


def clean_test_accounts(values: Iterable[str]) -> list[str]:
    """Test account appids stripped, blanks dropped, duplicates removed (in the order given);
    raises InvalidTestAccounts naming those that are not appids."""
    found = list(dict.fromkeys(value.strip() for value in values if value and value.strip()))
    invalid = [value for value in found if not looks_like_appid(value)]
    if invalid:
        raise InvalidTestAccounts(invalid)
    return found


def clean_permission_sets(offered: Iterable, required: Iterable) -> tuple[list[int], list[int]]:
    """(offered, required) as stored: ids of the catalog, sorted, without duplicates; required
    ones among the offered (or, with none offered, among PLATFORM_PERMISSION_SETS). Raises
    InvalidPermissionSets naming the unknown ones (as given) and the required-but-not-offered."""
    offered_ids, bad_offered = _split_ids(offered)
    required_ids, bad_required = _split_ids(required)
    catalog = permissions.catalog()
    unknown = sorted({i for i in [*offered_ids, *required_ids] if i not in catalog})
    unknown = [*map(str, unknown), *dict.fromkeys([*bad_offered, *bad_required])]
    available = set(offered_ids or configured_offered_set_ids())
    not_offered = [i for i in required_ids if i not in available and i in catalog]
    if unknown or not_offered:
        raise InvalidPermissionSets(unknown, not_offered)
    return offered_ids, required_ids


def _split_ids(values: Iterable | None) -> tuple[list[int], list[str]]:
    """Distinct ids, sorted, and the values that are not ids at all (blanks dropped)."""
    texts = [str(value).strip() for value in values or ()]
    ids = sorted({int(text) for text in texts if text.isdigit()})
    return ids, [text for text in texts if text and not text.isdigit()]


def set_permission_sets(row: Platform, *, offered: Iterable, required: Iterable, actor) -> bool:
    """Record the sets a platform offers (empty: PLATFORM_PERMISSION_SETS) and requires (among
    the offered; empty: REQUIRED_PERMISSION_SETS_<TYPE>). All is checked before anything
    changes; audited as platform.sets_set; True when they changed. The caller commits."""
    offered_ids, required_ids = clean_permission_sets(offered, required)
    if _sets_of(row) == (tuple(offered_ids), tuple(required_ids)):
        return False
    row.offered_set_ids, row.required_set_ids = offered_ids, required_ids
    row.updated_at = clock.now()
    _audit("platform.sets_set", row, actor, offered_set_ids=offered_ids,
           required_set_ids=required_ids)  # fmt: skip
    forget_cache()
    return True


def add_platform(*, actor, **fields) -> Platform:
    """Add a platform from the console (see `add`); the audit entry names it (and the sets it
    offers and requires, when given), never its keys."""
    row = add(**fields)
    sets = {"offered_set_ids": row.offered_set_ids, "required_set_ids": row.required_set_ids}
    _audit("platform.added", row, actor, name=row.name,
           **{key: ids for key, ids in sets.items() if ids})  # fmt: skip
    return row


def update_details(
    row: Platform, *, name: str, purpose: str | None, released: bool, test_accounts, actor
) -> list[str]:
    """Save what staff record about a platform: name, purpose, release state (recording
    "released" dates it now) and test accounts. All is checked before anything changes;
    returns the fields that changed."""
    name, purpose = (name or "").strip(), (purpose or "").strip() or None
    if not name or len(name) > 64 or len(purpose or "") > 200:
        raise PlatformError("a name of at most 64 and a purpose of at most 200 characters")
    accounts = clean_test_accounts(test_accounts)
    changed = [f for f, new in (("name", name), ("purpose", purpose)) if getattr(row, f) != new]
    if changed:
        row.name, row.purpose, row.updated_at = name, purpose, clock.now()
        _audit("platform.updated", row, actor, changed=changed, name=name)
    if released != (row.release_state == RELEASE_RELEASED):
        record_release(row, released=released)
        at = row.released_at.isoformat(timespec="seconds") if row.released_at else None
        _audit("platform.release_recorded", row, actor, release_state=row.release_state,
               released_at=at)  # fmt: skip
        changed.append("release_state")
    if set_test_accounts(row, accounts, actor=actor):
        changed.append("test_accounts")
    return changed


def set_test_accounts(row: Platform, appids: Iterable[str], *, actor) -> bool:
    """Record the platform's test accounts (checked, deduplicated); True when they changed."""
    accounts = clean_test_accounts(appids)
    if accounts == list(row.test_accounts or ()):
        return False
    row.test_accounts, row.updated_at = accounts, clock.now()
    _audit("platform.test_accounts_set", row, actor, test_accounts=accounts)
    return True


def replace_keys(row: Platform, *, actor, **new_keys: str | None) -> list[str]:
    """Replace some of a platform's AppSecret, message token and EncodingAESKey (blank keeps
    one; a replaced AES key stays readable as the previous one, for pushes already on their
    way). Refused for the default platform, whose keys are the WECHAT_* variables."""
    if is_default(row.component_appid):
        raise PlatformError("the default platform's keys are the WECHAT_* variables")
    given = {name: new_keys[name] for name in KEY_FIELDS if new_keys.get(name)}
    if not given or set(new_keys) - set(KEY_FIELDS):
        raise PlatformError("give at least one of " + ", ".join(KEY_FIELDS))
    merged = {**{name: getattr(row, name) for name in KEY_FIELDS}, **given}
    _check(row.component_appid, *merged.values(), None)
    if given.get("encoding_aes_key", row.encoding_aes_key) != row.encoding_aes_key:
        row.previous_encoding_aes_key = row.encoding_aes_key
    for name, value in given.items():
        setattr(row, name, value)
    row.updated_at = clock.now()
    _audit("platform.keys_replaced", row, actor, replaced=sorted(given))
    forget_cache()
    return sorted(given)


def change_status(row: Platform, status: str, *, actor) -> bool:
    """Retire a platform or make it active again (see `set_status`); False if it already was."""
    if row.status == status:
        return False
    set_status(row, status)
    _audit("platform.retired" if status == PLATFORM_RETIRED else "platform.reactivated", row,
           actor, name=row.name)  # fmt: skip
    return True


def _audit(action: str, row: Platform, actor, **details) -> None:
    audit.record(
        action, actor=actor, target_type="platform", target_id=row.component_appid, **details
    )


# --- which platforms a merchant may authorize (#16) -------------------------------------------


class NotAllowed(PlatformError):
    """The merchant may not authorize this platform (unknown, retired or not theirs)."""

    code = "platform_not_allowed"


def active_platforms() -> list[Platform]:
    """The active platforms, the default first, then by name."""
    return [row for row in all_platforms() if row.active]


def several() -> bool:
    """Whether this deployment serves more than one active platform (pages then name them)."""
    return len(active_platforms()) > 1


def platforms_for_merchant(merchant) -> list[Platform]:
    """The active platforms `merchant` may authorize, the default first: those staff chose
    (merchant.platform_appids), or every active one when staff chose none."""
    rows = active_platforms()
    chosen = merchant.platform_appids
    if chosen is None:
        return rows
    return [row for row in rows if row.component_appid in set(chosen)]


def merchant_platform(merchant, component_appid: str | None) -> Platform:
    """The platform `merchant` chose in the wizard; NotAllowed unless it is one of theirs.
    With exactly one allowed platform no choice is asked and None (or "") means that one."""
    allowed = platforms_for_merchant(merchant)
    if not component_appid and len(allowed) == 1:
        return allowed[0]
    for row in allowed:
        if row.component_appid == component_appid:
            return row
    raise NotAllowed(f"platform {component_appid!r} is not offered to this merchant")


def set_merchant_platforms(merchant, component_appids: Iterable[str] | None, *, actor) -> bool:
    """Staff choose the platforms a merchant may authorize: None means every active one, now
    and as platforms are added; else at least one active platform. Audited; the caller commits.
    Returns whether anything changed."""
    active = [row.component_appid for row in active_platforms()]
    chosen = None
    if component_appids is not None:
        wanted = set(component_appids)
        unknown = wanted - set(active)
        if unknown:
            raise NotAllowed("not active platforms: " + ", ".join(sorted(unknown)))
        if not wanted:
            raise PlatformError("choose at least one platform")
        chosen = [appid for appid in active if appid in wanted]
    if chosen == merchant.platform_appids:
        return False
    merchant.platform_appids = chosen
    audit.record(
        "merchant.platforms_set", actor=actor, merchant_id=merchant.id, target_type="merchant",
        target_id=merchant.id, platform_appids=chosen,
    )  # fmt: skip
    return True


def shows_testing_notice(row: Platform) -> bool:
    """Whether merchants are told that only its test accounts can authorize `row` yet: a
    platform staff recorded as testing, except a one-platform deployment's default (whose
    release state nobody needed to record before there were several)."""
    if row.release_state != RELEASE_TESTING:
        return False
    return not is_default(row.component_appid) or several()


def logo(component_appid: str) -> tuple[bytes, str] | None:
    """A platform's logo bytes and content type, if it has one (raster only: anything else
    recorded is not served, as an SVG could carry script)."""
    row = get(component_appid)
    if row is None or row.logo is None:
        return None
    kind = row.logo_content_type or ""
    return (row.logo, kind) if kind in ("image/png", "image/jpeg") else None
