"""Typed results of the component APIs; parsing tolerant of extra fields. Reference §3."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.wechat.errors import UnexpectedResponse

__all__ = [
    "ComponentToken",
    "PreAuthCode",
    "FuncScope",
    "AuthorizationInfo",
    "AuthorizerToken",
    "AuthorizerInfo",
    "AuthorizerDetails",
    "AuthorizerListItem",
    "AuthorizerOption",
    "StartPushTicketResult",
]


def _req(data: Mapping[str, Any], name: str, kind: type) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise UnexpectedResponse(f"response field {name!r} missing or not {kind.__name__}")
    return value


def _opt(data: Mapping[str, Any], name: str, kind: type) -> Any:
    value = data.get(name)
    return value if isinstance(value, kind) and not isinstance(value, bool) else None


def _id_of(data: Any) -> int | None:
    return _opt(data, "id", int) if isinstance(data, Mapping) else None


@dataclass(frozen=True)
class ComponentToken:
    """api_component_token result; caller stores now + expires_in. Reference §3.1."""

    component_access_token: str = field(repr=False)
    expires_in: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ComponentToken:
        """Parse the JSON answer. Reference §3.1."""
        return cls(_req(data, "component_access_token", str), _req(data, "expires_in", int))


@dataclass(frozen=True)
class PreAuthCode:
    """api_create_preauthcode result (single use). Reference §3.2."""

    pre_auth_code: str = field(repr=False)
    expires_in: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PreAuthCode:
        """Parse the JSON answer. Reference §3.2."""
        return cls(_req(data, "pre_auth_code", str), _req(data, "expires_in", int))


@dataclass(frozen=True)
class FuncScope:
    """A granted permission set: id plus the undocumented confirm_info. Reference §3.3, §5.4."""

    id: int
    confirm_info: Mapping[str, Any] | None = field(default=None, hash=False)

    @classmethod
    def parse_list(cls, items: Any) -> tuple[FuncScope, ...]:
        """Parse func_info[], skipping entries without an integer id. Reference §3.3."""
        scopes = []
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, Mapping):
                continue
            scope_id = _id_of(item.get("funcscope_category"))
            if scope_id is not None:
                confirm = item.get("confirm_info")
                scopes.append(
                    cls(scope_id, dict(confirm) if isinstance(confirm, Mapping) else None)
                )
        return tuple(scopes)


@dataclass(frozen=True)
class AuthorizationInfo:
    """authorization_info of api_query_auth / api_get_authorizer_info. Reference §3.3, §3.5."""

    authorizer_appid: str
    authorizer_refresh_token: str | None = field(repr=False)
    func_info: tuple[FuncScope, ...]
    authorizer_access_token: str | None = field(default=None, repr=False)
    expires_in: int | None = None

    @property
    def permission_set_ids(self) -> tuple[int, ...]:
        """Granted permission-set ids, sorted and unique. Reference §5.1."""
        return tuple(sorted({scope.id for scope in self.func_info}))

    @classmethod
    def from_json(cls, data: Any) -> AuthorizationInfo:
        """Parse an authorization_info object. Reference §3.3."""
        if not isinstance(data, Mapping):
            raise UnexpectedResponse("authorization_info missing")
        return cls(
            authorizer_appid=_req(data, "authorizer_appid", str),
            authorizer_refresh_token=_opt(data, "authorizer_refresh_token", str),
            func_info=FuncScope.parse_list(data.get("func_info")),
            authorizer_access_token=_opt(data, "authorizer_access_token", str),
            expires_in=_opt(data, "expires_in", int),
        )


@dataclass(frozen=True)
class AuthorizerToken:
    """api_authorizer_token result; refresh token may rotate, store it. Reference §3.4."""

    authorizer_access_token: str = field(repr=False)
    expires_in: int
    authorizer_refresh_token: str = field(repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuthorizerToken:
        """Parse the JSON answer. Reference §3.4."""
        return cls(
            _req(data, "authorizer_access_token", str),
            _req(data, "expires_in", int),
            _req(data, "authorizer_refresh_token", str),
        )


@dataclass(frozen=True)
class AuthorizerInfo:
    """authorizer_info: the account's public profile. Reference §3.5."""

    nick_name: str
    user_name: str
    head_img: str
    alias: str
    qrcode_url: str
    principal_name: str
    signature: str
    service_type_id: int | None
    verify_type_id: int | None
    account_status: int | None
    register_type: int | None
    business_info: Mapping[str, Any] = field(hash=False, repr=False)
    mini_program_info: Mapping[str, Any] | None = field(hash=False, repr=False)
    raw: Mapping[str, Any] = field(hash=False, repr=False)

    @property
    def is_mini_program(self) -> bool:
        """MiniProgramInfo is present only for Mini Programs. Reference §3.5."""
        return self.mini_program_info is not None

    @property
    def account_type(self) -> str:
        """`mini_program` or `official_account` (catalog vocabulary). Reference §3.5, §5."""
        return "mini_program" if self.is_mini_program else "official_account"

    @property
    def is_verified(self) -> bool:
        """verify_type_info.id ≠ −1 means some verification was done. Reference §3.5."""
        return self.verify_type_id is not None and self.verify_type_id != -1

    @classmethod
    def from_json(cls, data: Any) -> AuthorizerInfo:
        """Parse an authorizer_info object. Reference §3.5."""
        if not isinstance(data, Mapping):
            raise UnexpectedResponse("authorizer_info missing")

        def _text(name: str) -> str:
            return _opt(data, name, str) or ""

        mini = data.get("MiniProgramInfo")
        business = data.get("business_info")
        return cls(
            nick_name=_text("nick_name"),
            user_name=_text("user_name"),
            head_img=_text("head_img"),
            alias=_text("alias"),
            qrcode_url=_text("qrcode_url"),
            principal_name=_text("principal_name"),
            signature=_text("signature"),
            service_type_id=_id_of(data.get("service_type_info")),
            verify_type_id=_id_of(data.get("verify_type_info")),
            account_status=_opt(data, "account_status", int),
            register_type=_opt(data, "register_type", int),
            business_info=dict(business) if isinstance(business, Mapping) else {},
            mini_program_info=dict(mini) if isinstance(mini, Mapping) else None,
            raw=dict(data),
        )


@dataclass(frozen=True)
class AuthorizerDetails:
    """api_get_authorizer_info result: profile plus the current grant. Reference §3.5."""

    authorizer_info: AuthorizerInfo
    authorization_info: AuthorizationInfo

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuthorizerDetails:
        """Parse the JSON answer. Reference §3.5."""
        return cls(
            AuthorizerInfo.from_json(data.get("authorizer_info")),
            AuthorizationInfo.from_json(data.get("authorization_info")),
        )


@dataclass(frozen=True)
class AuthorizerListItem:
    """One row of api_get_authorizer_list; refresh_token may be empty. Reference §3.6."""

    authorizer_appid: str
    refresh_token: str = field(repr=False)
    auth_time: int | None

    @classmethod
    def from_json(cls, data: Any) -> AuthorizerListItem:
        """Parse one list entry. Reference §3.6."""
        if not isinstance(data, Mapping):
            raise UnexpectedResponse("authorizer list entry is not an object")
        return cls(
            _req(data, "authorizer_appid", str),
            _opt(data, "refresh_token", str) or "",
            _opt(data, "auth_time", int),
        )


@dataclass(frozen=True)
class AuthorizerOption:
    """api_get_authorizer_option result (values are strings like "0"/"1"). Reference §3.7."""

    authorizer_appid: str | None
    option_name: str
    option_value: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuthorizerOption:
        """Parse the JSON answer. Reference §3.7."""
        value = data.get("option_value")
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise UnexpectedResponse("option_value missing")
        return cls(_opt(data, "authorizer_appid", str), _req(data, "option_name", str), value)


@dataclass(frozen=True)
class StartPushTicketResult:
    """api_start_push_ticket: "ok" = restarted, "in a normal state" = was running. Ref §3.10."""

    already_running: bool
    errmsg: str
