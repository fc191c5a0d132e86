"""Typed events from the authorization-event URL and relayed authorizer messages. Ref §2, §1.6."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.wechat._xml import MAX_XML_BYTES, XmlValue, build_xml, parse_fields
from app.wechat.errors import MalformedMessage

__all__ = [
    "Event",
    "ComponentVerifyTicket",
    "Authorized",
    "UpdateAuthorized",
    "Unauthorized",
    "UnknownEvent",
    "Message",
    "TextMessage",
    "EventMessage",
    "UnknownMessage",
    "parse_event",
    "parse_message",
    "build_event_xml",
    "build_message_xml",
    "build_text_reply_xml",
    "build_xml",
]

INFO_COMPONENT_VERIFY_TICKET = "component_verify_ticket"
INFO_AUTHORIZED = "authorized"
INFO_UPDATE_AUTHORIZED = "updateauthorized"
INFO_UNAUTHORIZED = "unauthorized"

# AuthorizationCodeExpiredTime below this is read as a duration, not a Unix time (§2.2 note).
_ABSOLUTE_TIME_FLOOR = 1_000_000_000
_MAX_INT_DIGITS = 19


def _digest(*values: str) -> str:
    # Dedupe keys are stored in clear; secrets (tickets, codes) only enter them hashed.
    return hashlib.sha256("\x1f".join(values).encode("utf-8")).hexdigest()[:20]


def _int_field(fields: Mapping[str, str], name: str, *, required: bool = True) -> int | None:
    raw = fields.get(name)
    if raw is None or raw == "":
        if required:
            raise MalformedMessage(f"missing <{name}>")
        return None
    text = raw.strip()
    digits = text[1:] if text[:1] == "-" else text
    # ASCII digits only (int() alone would take "1_0", "+1" or "١"), at most 19 of them.
    if not (digits.isascii() and digits.isdigit() and len(digits) <= _MAX_INT_DIGITS):
        raise MalformedMessage(f"<{name}> is not an integer")
    return int(text)


def _str_field(fields: Mapping[str, str], name: str) -> str:
    value = fields.get(name, "")
    if not value:
        raise MalformedMessage(f"missing <{name}>")
    return value


def _safe_label(value: str) -> str:
    # Keep keys short and printable whatever an unknown push carries.
    clean = "".join(ch if ch.isascii() and ch.isprintable() and ch != ":" else "_" for ch in value)
    return clean[:64]


@dataclass(frozen=True)
class Event:
    """Common shape of every authorization-event push. Reference §2."""

    app_id: str
    create_time: int
    info_type: str
    fields: dict[str, str] = field(hash=False, compare=True, repr=False)

    @property
    def dedupe_key(self) -> str:
        """Stable key shared by retries of one logical push (of one platform: two platforms'
        pushes about one account at the same second are two pushes). Reference §1.8, §2.4."""
        info_type, app_id = _safe_label(self.info_type), _safe_label(self.app_id)
        return f"{info_type}:{self.create_time}:{app_id}:{self._identity()}"

    def _identity(self) -> str:
        canonical = json.dumps(self.fields, sort_keys=True, ensure_ascii=False)
        return _digest(canonical)


@dataclass(frozen=True)
class ComponentVerifyTicket(Event):
    """component_verify_ticket push (every 10 min, valid 12 h). Reference §2.1."""

    ticket: str = field(repr=False)

    def _identity(self) -> str:
        return _digest(self.ticket)


@dataclass(frozen=True)
class Authorized(Event):
    """authorized push: a merchant granted the platform. Reference §2.2."""

    authorizer_appid: str
    authorization_code: str = field(repr=False)
    authorization_code_expired_time: int | None
    pre_auth_code: str | None = field(repr=False)

    @property
    def code_expires_at(self) -> int | None:
        """Absolute Unix expiry of the code (lenient if a duration arrives). Reference §2.2."""
        value = self.authorization_code_expired_time
        if value is None:
            return None
        return value if value >= _ABSOLUTE_TIME_FLOOR else self.create_time + value

    def _identity(self) -> str:
        return f"{self.authorizer_appid}:{_digest(self.authorization_code)}"


@dataclass(frozen=True)
class UpdateAuthorized(Authorized):
    """updateauthorized push: the grant's permission sets changed. Reference §2.2."""


@dataclass(frozen=True)
class Unauthorized(Event):
    """unauthorized push: the merchant revoked the grant. Reference §2.2."""

    authorizer_appid: str

    def _identity(self) -> str:
        return self.authorizer_appid


@dataclass(frozen=True)
class UnknownEvent(Event):
    """Any other InfoType; all raw fields kept, answered `success`. Reference §2.3."""


def parse_event(inner_xml: str | bytes, *, max_bytes: int = MAX_XML_BYTES) -> Event:
    """Parse decrypted authorization-event XML into a typed event. Reference §2."""
    fields = parse_fields(inner_xml, max_bytes=max_bytes)
    common: dict[str, Any] = {
        "app_id": _str_field(fields, "AppId"),
        "create_time": _int_field(fields, "CreateTime"),
        "info_type": _str_field(fields, "InfoType"),
        "fields": fields,
    }
    info_type = common["info_type"]
    if info_type == INFO_COMPONENT_VERIFY_TICKET:
        return ComponentVerifyTicket(**common, ticket=_str_field(fields, "ComponentVerifyTicket"))
    if info_type in (INFO_AUTHORIZED, INFO_UPDATE_AUTHORIZED):
        cls = Authorized if info_type == INFO_AUTHORIZED else UpdateAuthorized
        return cls(
            **common,
            authorizer_appid=_str_field(fields, "AuthorizerAppid"),
            authorization_code=_str_field(fields, "AuthorizationCode"),
            authorization_code_expired_time=_int_field(
                fields, "AuthorizationCodeExpiredTime", required=False
            ),
            pre_auth_code=fields.get("PreAuthCode") or None,
        )
    if info_type == INFO_UNAUTHORIZED:
        return Unauthorized(**common, authorizer_appid=_str_field(fields, "AuthorizerAppid"))
    return UnknownEvent(**common)


# --- messages relayed for authorizers (message-and-event URL) -------------------------------


@dataclass(frozen=True)
class Message:
    """Common shape of a user message/event relayed for an authorized account. Ref §1.1, §1.6."""

    to_user_name: str
    from_user_name: str
    create_time: int
    msg_type: str
    fields: dict[str, str] = field(hash=False, compare=True, repr=False)

    @property
    def dedupe_key(self) -> str:
        """MsgId when present, else FromUserName+CreateTime (+Event). Reference §2.4."""
        msg_id = self.fields.get("MsgId")
        if msg_id:
            return f"msg:{self.to_user_name}:{_safe_label(msg_id)}"
        detail = _digest(self.from_user_name, self.fields.get("Event", ""), self.msg_type)
        return f"msg:{self.to_user_name}:{self.create_time}:{detail}"


@dataclass(frozen=True)
class TextMessage(Message):
    """MsgType text. Reference §1.6 (release check texts, release module)."""

    content: str
    msg_id: str | None


@dataclass(frozen=True)
class EventMessage(Message):
    """MsgType event (subscribe, CLICK, LOCATION, ...). Reference §1.6."""

    event: str
    event_key: str | None


@dataclass(frozen=True)
class UnknownMessage(Message):
    """Any other MsgType (image, voice, ...); raw fields kept. Reference §1.6."""


def parse_message(inner_xml: str | bytes, *, max_bytes: int = MAX_XML_BYTES) -> Message:
    """Parse decrypted message XML relayed for an authorizer. Reference §1.6."""
    fields = parse_fields(inner_xml, max_bytes=max_bytes)
    common: dict[str, Any] = {
        "to_user_name": _str_field(fields, "ToUserName"),
        "from_user_name": _str_field(fields, "FromUserName"),
        "create_time": _int_field(fields, "CreateTime"),
        "msg_type": _str_field(fields, "MsgType"),
        "fields": fields,
    }
    if common["msg_type"] == "text":
        return TextMessage(
            **common, content=fields.get("Content", ""), msg_id=fields.get("MsgId") or None
        )
    if common["msg_type"] == "event":
        return EventMessage(
            **common, event=_str_field(fields, "Event"), event_key=fields.get("EventKey")
        )
    return UnknownMessage(**common)


# --- builders (sandbox and tests produce what WeChat produces) ------------------------------


def build_event_xml(info_type: str, fields: Mapping[str, XmlValue]) -> str:
    """Inner event XML: AppId, CreateTime, InfoType first, then the rest in order. Reference §2."""
    ordered: dict[str, XmlValue] = {}
    for name in ("AppId", "CreateTime"):
        if name in fields:
            ordered[name] = fields[name]
    ordered["InfoType"] = info_type
    ordered.update(
        (k, v) for k, v in fields.items() if k not in ("AppId", "CreateTime", "InfoType")
    )
    return build_xml(ordered)


def build_message_xml(
    to_user_name: str, from_user_name: str, create_time: int, msg_type: str, **extra: XmlValue
) -> str:
    """Inner message XML as relayed for an authorizer (text, event, ...). Reference §1.6."""
    return build_xml(
        {
            "ToUserName": to_user_name,
            "FromUserName": from_user_name,
            "CreateTime": create_time,
            "MsgType": msg_type,
            **extra,
        }
    )


def build_text_reply_xml(message: Message, content: str, create_time: int) -> str:
    """Passive text reply to a relayed message (addresses swapped). Reference §1.7."""
    return build_message_xml(
        message.from_user_name, message.to_user_name, create_time, "text", Content=content
    )
