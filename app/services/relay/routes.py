"""Relay routes: where an account's messages go. Created, edited, paused and deleted by staff
(console) or `flask relay`; every change is audited without the route's token or secret.

Rules:
- a route's URL is http(s) with a host; its format is `wechat-xml` or `json`; its mode `reply`
  or `async`;
- its scope is every account, one merchant's accounts (`merchant_id`, the merchant must exist)
  or one account (`authorizer_appid`), never both; a merchant scope never crosses merchants;
- on top of that a route serves one third-party platform's accounts (`component_appid`, a
  platform we know) or every platform's (None, the default): an account authorized to two
  platforms is two accounts, and an appid route scoped to a platform gets only that platform's
  account's messages;
- its type filter names message types (`text`, `image`, ...), `event` (every event) or one
  event (`event.subscribe`); WeChat writes Event values in varying case (`subscribe`, `CLICK`,
  `SCAN`), so event names are lower-cased and matched case-insensitively; empty means every type;
- at most one `reply` route matches a message: an active reply route whose scope and types
  overlap another active reply route's is refused (create, edit, unpause). Two staff members
  saving overlapping routes at the same instant, or an account later assigned into a merchant
  that has its own reply route, can still make two match: the inbound path then uses the most
  specific one (see `pick_reply_route`);
- a `wechat-xml` route has a token (WeChat's rule: 3-32 letters or digits), a `json` route a
  secret (16-128 printable characters); one not given is generated and returned ONCE as
  `route.generated_credential` (None when nothing was generated). Changing the format drops the
  old format's credential.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from flask import current_app, has_request_context
from flask_babel import force_locale
from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, or_, select

from app.extensions import db
from app.models import Authorizer, Merchant, RelayRoute, User
from app.models.relay import FORMATS, MODES
from app.services import DomainError, audit, clock
from app.services.platform import platforms
from app.services.relay import transport
from app.services.relay.formats import Outgoing, build_request, read_reply
from app.wechat.replies import InvalidReply

MESSAGE_TYPES = (
    "text",
    "image",
    "voice",
    "video",
    "shortvideo",
    "location",
    "link",
    "miniprogrampage",
    "event",  # every event
)
EVENT_PREFIX = "event."
_EVENT_NAME = re.compile(r"[a-z0-9_]{1,56}\Z")
_TOKEN = re.compile(r"[A-Za-z0-9]{3,32}\Z")
_APPID = re.compile(r"wx[A-Za-z0-9]{1,62}\Z")
_SECRET_LENGTHS = (16, 128)
MAX_NAME = 120
MAX_URL = 2048
EDITABLE = frozenset(
    {"name", "url", "format", "mode", "token", "secret", "merchant_id", "authorizer_appid",
     "component_appid", "msg_types"}
)  # fmt: skip


class RouteError(DomainError):
    """A route that cannot be saved: `message` (lazy, translated where shown), `field` names the
    input at fault (name, url, format, mode, token, secret, scope, component_appid, msg_types,
    overlap)."""

    code = "invalid_relay_route"

    def __init__(self, message, *, field: str | None = None, **details):
        super().__init__(self.code, **details)  # str() translates `message` lazily
        self.message = message
        self.field = field

    def __str__(self) -> str:
        if has_request_context():
            return str(self.message)
        with force_locale("en"):  # CLI, jobs, logs: no request to pick a language from
            return str(self.message)


# --- matching ---------------------------------------------------------------------------------


def type_key(msg_type: str, event: str | None = None) -> str:
    """A message's type as routes name it: "text", "image", "event.subscribe" (lower case)."""
    msg_type = msg_type.strip().lower()
    if msg_type == "event":
        return EVENT_PREFIX + (event or "").strip().lower()
    return msg_type


def types_match(msg_types: Iterable[str] | None, key: str) -> bool:
    """Whether a route's type filter takes a message of type `key` (from `type_key`)."""
    if not msg_types:
        return True
    return key in msg_types or (key.startswith(EVENT_PREFIX) and "event" in msg_types)


def scope_includes(appid, merchant_id, component_appid):
    """SQL: routes whose scope includes an account (`appid`, `merchant_id`, `component_appid`:
    values or columns).

    A merchant scope matches only a known merchant: an unassigned account (merchant None) is
    reached by all-account routes and its own appid routes only. A route scoped to a platform
    reaches only that platform's accounts; an unscoped one every platform's."""
    clauses = [
        and_(RelayRoute.merchant_id.is_(None), RelayRoute.authorizer_appid.is_(None)),
        RelayRoute.authorizer_appid == appid,
    ]
    if merchant_id is not None:  # a column compares NULL-safely (NULL = x is never true)
        clauses.append(RelayRoute.merchant_id == merchant_id)
    platform = or_(
        RelayRoute.component_appid.is_(None), RelayRoute.component_appid == component_appid
    )
    return and_(platform, or_(*clauses))


def routes_for(authorizer: Authorizer, msg_type: str) -> list[RelayRoute]:
    """Active routes taking a message of `msg_type` ("text", "event.subscribe") for the account
    (on its platform), oldest first."""
    scope = scope_includes(authorizer.appid, authorizer.merchant_id, authorizer.component_appid)
    query = select(RelayRoute).where(RelayRoute.paused.is_(False), scope).order_by(RelayRoute.id)
    key = msg_type.lower()
    return [route for route in db.session.scalars(query) if types_match(route.msg_types, key)]


def pick_reply_route(routes):
    """The one reply route among matching routes: the most specific scope (account, merchant,
    everyone), then one platform over every platform, then a type filter over none, then the
    oldest; None without reply routes."""
    replies = [route for route in routes if route.mode == "reply"]
    if not replies:
        return None

    def specificity(route):
        scope = 0 if route.authorizer_appid else 1 if route.merchant_id else 2
        platform = 0 if route.component_appid else 1
        return (scope, platform, 0 if route.msg_types else 1, route.id)

    return min(replies, key=specificity)


def scope_label(route) -> str:
    """ "all", "merchant:<id>" or "appid:<appid>" (the CLI and logs; the platform apart, see
    `platform_label`)."""
    if route.authorizer_appid:
        return f"appid:{route.authorizer_appid}"
    if route.merchant_id is not None:
        return f"merchant:{route.merchant_id}"
    return "all"


def platform_label(route) -> str:
    """The route's platform (component appid), "*" for every platform (the CLI)."""
    return route.component_appid or "*"


# --- changes ----------------------------------------------------------------------------------


def list_routes(component_appid: str | None = None) -> list[RelayRoute]:
    """Every route, oldest first; with `component_appid`, the routes serving that platform's
    accounts (its own and the every-platform ones)."""
    query = select(RelayRoute).order_by(RelayRoute.id)
    if component_appid:
        query = query.where(
            or_(RelayRoute.component_appid.is_(None), RelayRoute.component_appid == component_appid)
        )
    return list(db.session.scalars(query))


def create_route(
    *,
    name: str,
    url: str,
    format: str,
    mode: str,
    token: str | None = None,
    secret: str | None = None,
    merchant_id: int | None = None,
    authorizer_appid: str | None = None,
    component_appid: str | None = None,
    msg_types: Iterable[str] = (),
    actor: User | str | None = None,
) -> RelayRoute:
    """Validate and save a route (audited, committed). A generated token or secret is on
    `route.generated_credential`, once; None when the caller gave one. `component_appid`: only
    that platform's accounts (None: every platform's)."""
    values = _validated(
        {
            "name": name, "url": url, "format": format, "mode": mode, "token": token,
            "secret": secret, "merchant_id": merchant_id, "authorizer_appid": authorizer_appid,
            "component_appid": component_appid, "msg_types": msg_types, "paused": False,
        }
    )  # fmt: skip
    generated = _fill_credential(values)
    if values["mode"] == "reply":
        _refuse_reply_overlap(values, route_id=None)
    now = clock.now()
    route = RelayRoute(
        **values,
        created_by_id=actor.id if isinstance(actor, User) else None,
        created_at=now,
        updated_at=now,
    )
    db.session.add(route)
    db.session.flush()
    _audit("relay_route.created", route, actor, **_describe(values))
    db.session.commit()
    route.generated_credential = generated
    return route


def update_route(route: RelayRoute, *, actor: User | str | None = None, **changes) -> RelayRoute:
    """Change some of name, url, format, mode, token, secret, merchant_id, authorizer_appid,
    component_appid, msg_types (validated as a whole; audited; committed). A token or secret of
    None keeps the current one; a format change generates the new format's credential when none
    is given (`route.generated_credential`)."""
    unknown = set(changes) - EDITABLE
    if unknown:
        raise TypeError(f"not editable: {', '.join(sorted(unknown))}")
    current = {name: getattr(route, name) for name in EDITABLE}
    current["paused"] = route.paused
    for name in ("token", "secret"):
        if changes.get(name) is None:
            changes.pop(name, None)
    merged = {**current, **changes}
    old_credential = "token" if route.format == "wechat-xml" else "secret"
    if merged["format"] != route.format and old_credential not in changes:
        merged[old_credential] = None  # the old format's credential means nothing now
    values = _validated(merged)
    generated = _fill_credential(values)
    if values["mode"] == "reply" and not values["paused"]:
        _refuse_reply_overlap(values, route_id=route.id)
    changed = sorted(name for name in EDITABLE if values[name] != current[name])
    if changed:
        for name in changed:
            setattr(route, name, values[name])
        route.updated_at = clock.now()
        shown = {
            k: v for k, v in _describe(values).items() if k in changed or k in ("scope", "platform")
        }
        _audit("relay_route.updated", route, actor, changed=changed, **shown)
    db.session.commit()
    route.generated_credential = generated
    return route


def set_paused(route: RelayRoute, paused: bool, *, actor: User | str | None = None) -> RelayRoute:
    """Pause (no new messages reach it) or resume a route; resuming a reply route is refused
    when it would overlap an active reply route."""
    paused = bool(paused)
    if route.paused == paused:
        return route
    if not paused and route.mode == "reply":
        _refuse_reply_overlap(_values_of(route), route_id=route.id)
    route.paused = paused
    route.updated_at = clock.now()
    _audit("relay_route.paused" if paused else "relay_route.resumed", route, actor)
    db.session.commit()
    return route


def delete_route(route: RelayRoute, *, actor: User | str | None = None) -> None:
    """Delete a route with its deliveries (the stored messages stay until retention)."""
    _audit("relay_route.deleted", route, actor, **_describe(_values_of(route)))
    db.session.delete(route)
    db.session.commit()


def _audit(action: str, route: RelayRoute, actor, **details) -> None:
    audit.record(
        action,
        actor=actor,
        merchant_id=route.merchant_id,
        target_type="relay_route",
        target_id=route.id,
        name=route.name,
        **details,
    )


def _describe(values: dict) -> dict:
    """What the audit log keeps of a route: never its token, secret or URL query."""
    return {
        "url": display_url(values["url"]),
        "format": values["format"],
        "mode": values["mode"],
        "scope": scope_label(_Values(values)),
        "platform": platform_label(_Values(values)),
        "msg_types": list(values["msg_types"]),
    }


def display_url(url: str) -> str:
    """scheme://host[:port]/path of a route: never the query, fragment or user:password, which
    may carry a secret."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return urlunsplit((parts.scheme, f"{host}:{port}" if port else host, parts.path, "", ""))


class _Values:
    """Attribute access over a values dict (scope_label reads routes and candidates alike)."""

    def __init__(self, values: dict):
        self.__dict__.update(values)


def _values_of(route: RelayRoute) -> dict:
    return {name: getattr(route, name) for name in (*EDITABLE, "paused")}


# --- validation -------------------------------------------------------------------------------


def _validated(values: dict) -> dict:
    """Normalised copies of the values, or RouteError for the first input at fault."""
    out = dict(values)
    out["url"] = _check_url(values["url"])
    out["name"] = _check_name(values["name"], out["url"])
    if values["format"] not in FORMATS:
        raise RouteError(_l("Choose a format: wechat-xml or json."), field="format")
    if values["mode"] not in MODES:
        raise RouteError(_l("Choose a mode: reply or async."), field="mode")
    out["merchant_id"], out["authorizer_appid"] = _check_scope(
        values["merchant_id"], values["authorizer_appid"]
    )
    out["component_appid"] = _check_platform(values.get("component_appid"))
    out["msg_types"] = normalise_types(values["msg_types"])
    out["token"] = _check_token(values["token"]) if values["format"] == "wechat-xml" else None
    out["secret"] = _check_secret(values["secret"]) if values["format"] == "json" else None
    if values["format"] == "wechat-xml" and values.get("secret"):
        raise RouteError(_l("A secret signs json routes; wechat-xml routes use a token."),
                         field="secret")  # fmt: skip
    if values["format"] == "json" and values.get("token"):
        raise RouteError(_l("A token is for wechat-xml routes; json routes use a secret."),
                         field="token")  # fmt: skip
    return out


def _check_url(url) -> str:
    url = (url or "").strip()
    invalid = RouteError(_l("Enter an http:// or https:// URL with a host."), field="url")
    if not url or len(url) > MAX_URL or any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise invalid
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise invalid from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise invalid
    return url


def _check_name(name, url: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        return (urlsplit(url).hostname or "route")[:MAX_NAME]
    if len(name) > MAX_NAME:
        raise RouteError(_l("Names are at most 120 characters."), field="name")
    return name


def _check_scope(merchant_id, appid) -> tuple[int | None, str | None]:
    appid = (appid or "").strip() or None
    if merchant_id in ("", None):
        merchant_id = None
    if merchant_id is not None and appid is not None:
        raise RouteError(_l("Scope a route to one merchant or one account, not both."),
                         field="scope")  # fmt: skip
    if merchant_id is not None:
        try:
            merchant_id = int(merchant_id)
        except (TypeError, ValueError):
            merchant_id = -1
        if merchant_id < 1 or db.session.get(Merchant, merchant_id) is None:
            raise RouteError(_l("No such merchant."), field="scope")
    if appid is not None and not _APPID.match(appid):
        raise RouteError(_l("An account's appid starts with wx, then letters and digits."),
                         field="scope")  # fmt: skip
    return merchant_id, appid


def _check_platform(component_appid) -> str | None:
    """None (every platform) or a platform we know (active or retired)."""
    component_appid = (component_appid or "").strip() or None
    if component_appid is not None and platforms.keys(component_appid) is None:
        raise RouteError(_l("No such platform."), field="component_appid")
    return component_appid


def normalise_types(msg_types) -> list[str]:
    """A type filter as stored: sorted unique lower-case names; RouteError for an unknown one.
    Accepts a list or a comma/space separated string."""
    if isinstance(msg_types, str):
        msg_types = msg_types.replace(",", " ").split()
    names = set()
    for raw in msg_types or ():
        raw = raw if isinstance(raw, str) else repr(raw)
        name = raw.strip().lower()
        if not name:
            continue
        event = name.removeprefix(EVENT_PREFIX) if name.startswith(EVENT_PREFIX) else None
        if name not in MESSAGE_TYPES and (event is None or not _EVENT_NAME.match(event)):
            raise RouteError(
                _l(
                    "Unknown message type %(name)s: use text, image, voice, video, shortvideo,"
                    " location, link, miniprogrampage, event or event.<Event>.",
                    name=raw.strip()[:64],
                ),
                field="msg_types",
            )
        names.add(name)
    return sorted(names)


def _check_token(token) -> str | None:
    if token in (None, ""):
        return None
    if not isinstance(token, str) or not _TOKEN.match(token):
        raise RouteError(_l("A token is 3 to 32 letters or digits (WeChat's rule)."),
                         field="token")  # fmt: skip
    return token


def _check_secret(secret) -> str | None:
    if secret in (None, ""):
        return None
    low, high = _SECRET_LENGTHS
    if (
        not isinstance(secret, str)
        or not low <= len(secret) <= high
        or not all(33 <= ord(ch) < 127 for ch in secret)
    ):
        raise RouteError(_l("A secret is 16 to 128 printable characters without spaces."),
                         field="secret")  # fmt: skip
    return secret


def _fill_credential(values: dict) -> str | None:
    """Generate the credential the format needs when none was given; returns it (or None)."""
    if values["format"] == "wechat-xml" and not values["token"]:
        values["token"] = secrets.token_hex(16)  # 32 letters and digits: WeChat's longest
        return values["token"]
    if values["format"] == "json" and not values["secret"]:
        values["secret"] = secrets.token_urlsafe(32)
        return values["secret"]
    return None


def _refuse_reply_overlap(values: dict, *, route_id: int | None) -> None:
    """RouteError when another active reply route could match the same message."""
    others = select(RelayRoute).where(RelayRoute.mode == "reply", RelayRoute.paused.is_(False))
    if route_id is not None:
        others = others.where(RelayRoute.id != route_id)
    for other in db.session.scalars(others.order_by(RelayRoute.id)):
        if _types_overlap(values["msg_types"], other.msg_types) and _scopes_overlap(
            (values["component_appid"], values["merchant_id"], values["authorizer_appid"]),
            (other.component_appid, other.merchant_id, other.authorizer_appid),
        ):
            raise RouteError(
                _l(
                    "Reply route %(id)s (%(name)s) already takes some of these messages: at most"
                    " one reply route may match a message. Narrow the scope or types, or pause"
                    " it.",
                    id=other.id,
                    name=other.name,
                ),
                field="overlap",
                route_id=other.id,
            )


def _types_overlap(a, b) -> bool:
    if not a or not b:
        return True
    a, b = set(a), set(b)
    if a & b:
        return True
    return ("event" in a and any(t.startswith(EVENT_PREFIX) for t in b)) or (
        "event" in b and any(t.startswith(EVENT_PREFIX) for t in a)
    )


def _scopes_overlap(a: tuple, b: tuple) -> bool:
    """Whether two scopes (component_appid, merchant_id, authorizer_appid) share an account."""
    (platform_a, merchant_a, appid_a), (platform_b, merchant_b, appid_b) = a, b
    if platform_a and platform_b and platform_a != platform_b:
        return False  # two platforms' accounts are never the same account
    if (merchant_a is None and appid_a is None) or (merchant_b is None and appid_b is None):
        return True
    if appid_a and appid_b:
        return appid_a == appid_b
    if merchant_a is not None and merchant_b is not None:
        return merchant_a == merchant_b
    appid, merchant_id = (appid_a, merchant_b) if appid_a else (appid_b, merchant_a)
    # The account on the platforms both scopes share (any, when neither names one).
    held = select(Authorizer.id).where(
        Authorizer.appid == appid, Authorizer.merchant_id == merchant_id
    )
    platform = platform_a or platform_b
    if platform:
        held = held.where(Authorizer.component_appid == platform)
    return db.session.scalar(held.limit(1)) is not None


# --- test send --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestSendResult:
    """What a synthetic message to a route got back (nothing is stored)."""

    __test__ = False  # not a pytest class

    status_code: int | None
    reply_xml: str | None
    duration_ms: int
    error: str | None


TEST_OPENID = "grantdesk-test-openid"
TEST_USER_NAME = "gh_grantdesk_test"


def test_send(route: RelayRoute) -> TestSendResult:
    """POST a synthetic text message to the route in its format, as from the route's platform
    (the default one for an every-platform route); read and check the reply for a reply route.
    Nothing is stored or audited."""
    from app.wechat.events import build_message_xml

    now = int(clock.now().timestamp())
    msg_id = str(secrets.randbelow(10**18))
    xml = build_message_xml(
        TEST_USER_NAME, TEST_OPENID, now, "text", Content="Grantdesk test message", MsgId=msg_id
    )
    fields = {"ToUserName": TEST_USER_NAME, "FromUserName": TEST_OPENID, "CreateTime": str(now),
              "MsgType": "text", "Content": "Grantdesk test message", "MsgId": msg_id}  # fmt: skip
    outgoing = Outgoing(
        message_id=0,
        delivery_id=0,
        component_appid=route.component_appid or platforms.default_appid(),
        authorizer_appid=route.authorizer_appid or "",
        merchant_id=route.merchant_id,
        received_at=clock.now(),
        xml=xml,
        fields=fields,
    )
    config = current_app.config
    timeout = (
        config["RELAY_REPLY_TIMEOUT"] if route.mode == "reply" else config["RELAY_DELIVERY_TIMEOUT"]
    )
    started = time.perf_counter()
    request = build_request(route, outgoing, timestamp=now)
    try:
        status, body = transport.post(request, timeout=timeout)
    except (transport.HTTPError, transport.AnswerUnread) as exc:
        return TestSendResult(None, None, _ms_since(started), transport.describe(exc))
    duration = _ms_since(started)
    if not 200 <= status < 300:
        return TestSendResult(status, None, duration, f"HTTP {status}")
    if route.mode != "reply":
        return TestSendResult(status, None, duration, None)
    try:
        reply = read_reply(route, outgoing, body, now=now)
    except InvalidReply as exc:
        return TestSendResult(status, None, duration, f"invalid reply: {exc}"[:200])
    return TestSendResult(status, reply, duration, None)


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
