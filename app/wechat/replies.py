"""Passive replies to relayed messages: what WeChat accepts, checked before it is sent. Ref §1.7.

A handler behind the relay answers a message with a plaintext reply (wechat-xml) or a JSON
object (json). Either way WeChat only shows it when it is addressed back to the sender, names a
MsgType WeChat knows and carries that type's required fields; anything else would be dropped by
WeChat in silence, so it is refused here, visibly.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.wechat._xml import build_xml, flatten, parse_root
from app.wechat.errors import MalformedMessage

# MsgType -> the fields (flattened paths) a passive reply of that type must carry.
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "text": ("Content",),
    "image": ("Image.MediaId",),
    "voice": ("Voice.MediaId",),
    "video": ("Video.MediaId",),
    "music": ("Music.ThumbMediaId",),
    "news": ("ArticleCount", "Articles.item.Title"),
    "transfer_customer_service": (),
}
MAX_ARTICLES = 8
# What an empty answer looks like: WeChat shows nothing and does not retry.
NO_REPLY = ("", "success")


class InvalidReply(MalformedMessage):
    """A handler's reply that WeChat would not show (malformed, misaddressed, unknown type)."""


def check_passive_reply(xml: str, *, to_user: str, from_user: str) -> str:
    """Return `xml` if it is a passive reply WeChat shows to `to_user`, else raise InvalidReply."""
    try:
        fields = flatten(parse_root(xml))
    except MalformedMessage as exc:
        raise InvalidReply(f"reply is not well-formed: {exc}") from None
    if fields.get("ToUserName") != to_user or fields.get("FromUserName") != from_user:
        raise InvalidReply("reply is not addressed to the message's sender")
    if not fields.get("CreateTime", "").isdigit():
        raise InvalidReply("reply has no numeric CreateTime")
    msg_type = fields.get("MsgType", "")
    if msg_type not in REQUIRED_FIELDS:
        raise InvalidReply(f"unknown reply MsgType {msg_type[:40]!r}")
    missing = [name for name in REQUIRED_FIELDS[msg_type] if not fields.get(name)]
    if missing:
        raise InvalidReply(f"{msg_type} reply lacks {', '.join(missing)}")
    if msg_type == "news":
        _check_articles(fields)
    return xml


def _check_articles(fields: Mapping[str, str]) -> None:
    count = fields.get("ArticleCount", "")
    items = {path.split(".")[1] for path in fields if path.startswith("Articles.item")}
    if not count.isdigit() or not 1 <= int(count) <= MAX_ARTICLES or int(count) != len(items):
        raise InvalidReply("news reply: ArticleCount does not match its articles")


def reply_from_json(reply: Mapping, *, to_user: str, from_user: str, create_time: int) -> str:
    """Build (and check) passive reply XML from a JSON `{"MsgType": ..., ...}` object."""
    if not isinstance(reply, Mapping) or not isinstance(reply.get("MsgType"), str):
        raise InvalidReply('"reply" must be an object with a string "MsgType"')
    for name, ours in (("ToUserName", to_user), ("FromUserName", from_user)):
        if name in reply and reply[name] != ours:
            raise InvalidReply("reply is not addressed to the message's sender")
    body = {k: v for k, v in reply.items() if k not in ("ToUserName", "FromUserName", "CreateTime")}
    articles = body.get("Articles")
    if isinstance(articles, list):  # the natural JSON shape; WeChat's XML wraps each in <item>
        body["Articles"] = {"item": articles}
    fields = {"ToUserName": to_user, "FromUserName": from_user, "CreateTime": create_time, **body}
    try:
        xml = build_xml(fields)
    except (TypeError, ValueError) as exc:
        raise InvalidReply(f"reply cannot be written as XML: {exc}") from None
    return check_passive_reply(xml, to_user=to_user, from_user=from_user)


def nest(fields: Mapping[str, str]) -> dict:
    """Flattened message fields ("ScanCodeInfo.ScanType") back to nested objects, for JSON."""
    out: dict = {}
    for path, value in fields.items():
        node = out
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out
