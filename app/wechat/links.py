"""PC and mobile (H5) authorization-page links, and a parser for them. Reference §4."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from urllib.parse import parse_qs, quote, urlsplit

__all__ = [
    "AuthType",
    "AuthorizationLink",
    "PC_BASE",
    "MOBILE_BASE",
    "PC_PATH",
    "MOBILE_PATH",
    "pc_authorization_url",
    "mobile_authorization_url",
    "parse_authorization_url",
]

PC_BASE = "https://mp.weixin.qq.com"
PC_PATH = "/cgi-bin/componentloginpage"
MOBILE_BASE = "https://open.weixin.qq.com"
MOBILE_PATH = "/wxaopen/safe/bindcomponent"
_MOBILE_FRAGMENT = "wechat_redirect"


class AuthType(IntEnum):
    """Which accounts the page lists; absent means both. Reference §4.4."""

    OFFICIAL_ACCOUNT = 1
    MINI_PROGRAM = 2
    BOTH = 3


@dataclass(frozen=True)
class AuthorizationLink:
    """Parameters carried by an authorization link (PC or mobile). Reference §4.4."""

    kind: str  # "pc" or "mobile"
    component_appid: str
    pre_auth_code: str = field(repr=False)
    redirect_uri: str
    auth_type: int | None = None
    biz_appid: str | None = None
    category_id_list: tuple[int, ...] = ()
    extra: dict[str, str] = field(default_factory=dict, hash=False)


def _q(value: str) -> str:
    # safe="" so a redirect_uri keeps its own ?a=1&b=2 intact (§4.4 encoding pitfall).
    return quote(value, safe="")


def _query(
    component_appid: str,
    pre_auth_code: str,
    redirect_uri: str,
    auth_type: int | None,
    biz_appid: str | None,
    category_id_list: Iterable[int] | None,
) -> str:
    if not component_appid or not pre_auth_code:
        raise ValueError("component_appid and pre_auth_code are required")
    scheme = urlsplit(redirect_uri).scheme
    if scheme not in ("http", "https") or not urlsplit(redirect_uri).netloc:
        raise ValueError("redirect_uri must be an absolute http(s) URL")
    parts = [
        f"component_appid={_q(component_appid)}",
        f"pre_auth_code={_q(pre_auth_code)}",
        f"redirect_uri={_q(redirect_uri)}",
    ]
    if auth_type is not None:
        if isinstance(auth_type, bool) or int(auth_type) < 1:
            raise ValueError("auth_type must be a positive integer")
        parts.append(f"auth_type={int(auth_type)}")
    if biz_appid:
        parts.append(f"biz_appid={_q(biz_appid)}")
    ids = [int(i) for i in category_id_list or ()]
    if ids:
        if any(i < 1 for i in ids):
            raise ValueError("permission-set ids are positive integers")
        # The documented form is a literal "|" list, e.g. category_id_list=1|2 (§4.4).
        parts.append("category_id_list=" + "|".join(str(i) for i in ids))
    return "&".join(parts)


def pc_authorization_url(
    component_appid: str,
    pre_auth_code: str,
    redirect_uri: str,
    *,
    auth_type: int | None = None,
    biz_appid: str | None = None,
    category_id_list: Iterable[int] | None = None,
    base: str = PC_BASE,
) -> str:
    """PC link to componentloginpage (opened by a user click from our domain). Ref §4.2, §4.5."""
    query = _query(
        component_appid, pre_auth_code, redirect_uri, auth_type, biz_appid, category_id_list
    )
    return f"{base.rstrip('/')}{PC_PATH}?{query}"


def mobile_authorization_url(
    component_appid: str,
    pre_auth_code: str,
    redirect_uri: str,
    *,
    auth_type: int | None = None,
    biz_appid: str | None = None,
    category_id_list: Iterable[int] | None = None,
    base: str = MOBILE_BASE,
) -> str:
    """Current H5 link (wxaopen/safe/bindcomponent ... #wechat_redirect). Reference §4.3."""
    query = _query(
        component_appid, pre_auth_code, redirect_uri, auth_type, biz_appid, category_id_list
    )
    prefix = "action=bindcomponent&no_scan=1&"
    return f"{base.rstrip('/')}{MOBILE_PATH}?{prefix}{query}#{_MOBILE_FRAGMENT}"


def parse_authorization_url(url: str) -> AuthorizationLink:
    """Parse a PC or mobile link back into its parameters (any host). Reference §4.2–§4.4."""
    split = urlsplit(url)
    if split.path.endswith(PC_PATH) or split.path == PC_PATH:
        kind = "pc"
    elif split.path.endswith("/safe/bindcomponent"):  # current and legacy mobile forms
        kind = "mobile"
    else:
        raise ValueError("not an authorization-page URL")
    try:
        raw = parse_qs(split.query, keep_blank_values=True, strict_parsing=bool(split.query))
    except ValueError:
        raise ValueError("malformed query string") from None
    # Legacy mobile links repeat auth_type (a hard-coded 3, then the caller's); the last wins.
    values = {key: items[-1] for key, items in raw.items()}
    for required in ("component_appid", "pre_auth_code", "redirect_uri"):
        if not values.get(required):
            raise ValueError(f"missing {required}")
    auth_type = values.get("auth_type")
    if auth_type is not None and not (auth_type.isascii() and auth_type.isdigit()):
        raise ValueError("auth_type is not an integer")
    categories = values.get("category_id_list") or ""
    try:
        category_ids = tuple(int(part) for part in categories.split("|") if part)
    except ValueError:
        raise ValueError("category_id_list is not a |-separated list of ids") from None
    known = {
        "component_appid",
        "pre_auth_code",
        "redirect_uri",
        "auth_type",
        "biz_appid",
        "category_id_list",
    }
    return AuthorizationLink(
        kind=kind,
        component_appid=values["component_appid"],
        pre_auth_code=values["pre_auth_code"],
        redirect_uri=values["redirect_uri"],
        auth_type=int(auth_type) if auth_type is not None else None,
        biz_appid=values.get("biz_appid") or None,
        category_id_list=category_ids,
        extra={k: v for k, v in values.items() if k not in known},
    )
