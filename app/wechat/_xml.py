"""Hardened XML reading (defusedxml) and WeChat-style XML writing. Reference §1.6, §1.8, §2."""

from __future__ import annotations

import re
from collections.abc import Mapping
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from app.wechat.errors import MalformedMessage

# Pushes and relayed messages are a few KiB at most; anything far larger is abuse.
MAX_XML_BYTES = 64 * 1024
MAX_DEPTH = 6

_TAG_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
# Characters XML 1.0 cannot carry at all (not even as character references).
_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

XmlValue = str | int | Mapping[str, "XmlValue"] | list["XmlValue"]


def parse_root(data: bytes | str, *, max_bytes: int = MAX_XML_BYTES) -> Element:
    """Parse a WeChat <xml> document safely or raise MalformedMessage. Reference §1.8 step 2."""
    try:
        size = len(data.encode("utf-8")) if isinstance(data, str) else len(data)
    except UnicodeEncodeError:
        raise MalformedMessage("body is not encodable text (lone surrogate)") from None
    if size > max_bytes:
        raise MalformedMessage(f"XML body larger than {max_bytes} bytes")
    if not data or not data.strip():
        raise MalformedMessage("empty XML body")
    try:
        # No DTD at all: WeChat never sends one, and it is the door to entity bombs and XXE.
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise MalformedMessage(f"forbidden XML construct: {type(exc).__name__}") from None
    except (ParseError, ValueError, TypeError) as exc:
        raise MalformedMessage(f"unparsable XML: {exc}") from None
    if root.tag != "xml":
        raise MalformedMessage("root element is not <xml>")
    _check_shape(root, 1)
    return root


def _check_shape(element: Element, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise MalformedMessage("XML nested too deeply")
    children = list(element)
    if children and (element.text or "").strip():
        raise MalformedMessage(f"mixed content in <{element.tag}>")
    for child in children:
        if (child.tail or "").strip():
            raise MalformedMessage(f"stray text after <{child.tag}>")
        _check_shape(child, depth + 1)


def unique_children(root: Element) -> dict[str, Element]:
    """Map tag → element for direct children, rejecting duplicates. Reference §1.8."""
    result: dict[str, Element] = {}
    for child in root:
        if child.tag in result:
            raise MalformedMessage(f"duplicate <{child.tag}>")
        result[child.tag] = child
    return result


def flatten(root: Element) -> dict[str, str]:
    """All leaf values as {path: text}; nested paths joined with '.', repeats numbered. Ref §2."""
    unique_children(root)  # top-level duplicates are always an error
    out: dict[str, str] = {}
    _flatten_into(root, "", out)
    return out


def _flatten_into(element: Element, prefix: str, out: dict[str, str]) -> None:
    seen: dict[str, int] = {}
    for child in element:
        count = seen.get(child.tag, 0)
        seen[child.tag] = count + 1
        name = child.tag if count == 0 else f"{child.tag}[{count}]"
        path = f"{prefix}{name}"
        if len(child):
            _flatten_into(child, path + ".", out)
        else:
            out[path] = child.text or ""


def cdata(value: str) -> str:
    """Wrap text in CDATA, splitting "]]>" and carrying CR as &#13; so it survives. Ref §2."""
    if _INVALID_XML_CHARS.search(value):
        raise ValueError("value contains characters XML 1.0 cannot represent")
    # A parser normalises a raw CR inside CDATA to LF, so CRs travel as character references.
    parts = value.replace("]]>", "]]]]><![CDATA[>").split("\r")
    return "&#13;".join(f"<![CDATA[{part}]]>" for part in parts)


def build_xml(fields: Mapping[str, XmlValue]) -> str:
    """Serialise like WeChat: ints bare, strings in CDATA, dicts nested, lists repeated. Ref §2."""
    return f"<xml>{_build_body(fields)}</xml>"


def _build_body(fields: Mapping[str, XmlValue]) -> str:
    parts: list[str] = []
    for tag, value in fields.items():
        if not _TAG_RE.match(tag):
            raise ValueError(f"invalid XML tag name: {tag!r}")
        # A list repeats its element (news replies: <Articles><item/><item/></Articles>).
        for item in value if isinstance(value, list) else [value]:
            parts.append(_build_element(tag, item))
    return "".join(parts)


def _build_element(tag: str, value: XmlValue) -> str:
    if isinstance(value, bool):
        raise TypeError(f"{tag}: booleans have no WeChat XML form")
    if isinstance(value, int):
        inner = str(value)
    elif isinstance(value, str):
        inner = cdata(value)
    elif isinstance(value, Mapping):
        inner = _build_body(value)
    else:
        raise TypeError(f"{tag}: unsupported value type {type(value).__name__}")
    return f"<{tag}>{inner}</{tag}>"
