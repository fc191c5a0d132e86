"""Hardened XML reading (one bounded pyexpat pass) and WeChat-style XML writing. Ref §1.6, §1.8, §2.

Reading takes one pass of expat with everything a WeChat document never needs switched off: a DTD
is refused when it starts (so no entity, internal or external, and no parameter entity can ever be
declared), external references are refused, and the shape is checked while parsing: root <xml>,
depth cap, no text mixed with elements, no duplicate top-level tags. The flat {path: text} view that
every caller wants is built in the same pass (parse_fields); parse_root builds an Element instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pyexpat import XML_PARAM_ENTITY_PARSING_NEVER, ExpatError, ParserCreate
from xml.etree.ElementTree import Element, TreeBuilder

from app.wechat.errors import MalformedMessage

# Pushes and relayed messages are a few KiB at most; anything far larger is abuse.
MAX_XML_BYTES = 64 * 1024
MAX_DEPTH = 6

_TAG_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
# Characters XML 1.0 cannot carry at all (not even as character references).
_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

XmlValue = str | int | Mapping[str, "XmlValue"] | list["XmlValue"]


def parse_fields(
    data: bytes | str, *, max_bytes: int = MAX_XML_BYTES, max_depth: int = MAX_DEPTH
) -> dict[str, str]:
    """Parse a WeChat <xml> document safely into flatten()'s {path: text}, in one pass.

    Same result as flatten(parse_root(data)), or MalformedMessage. Reference §1.8 step 2, §2.
    """
    return _parse(data, max_bytes, max_depth, None)


def parse_root(data: bytes | str, *, max_bytes: int = MAX_XML_BYTES) -> Element:
    """Parse a WeChat <xml> document safely or raise MalformedMessage. Reference §1.8 step 2."""
    tree = TreeBuilder()
    _parse(data, max_bytes, MAX_DEPTH, tree)
    return tree.close()


def _forbid_dtd(*_args: object) -> None:
    # No DTD at all: WeChat never sends one, and it is the door to entity bombs and XXE.
    raise MalformedMessage("forbidden XML construct: DTD")


def _forbid_entity(*_args: object) -> None:  # unreachable without a DTD; kept as a second lock
    raise MalformedMessage("forbidden XML construct: entity declaration")


def _forbid_external(*_args: object) -> None:  # likewise
    raise MalformedMessage("forbidden XML construct: external reference")


def _parse(
    data: bytes | str, max_bytes: int, max_depth: int, tree: TreeBuilder | None
) -> dict[str, str]:
    try:
        size = len(data.encode("utf-8")) if isinstance(data, str) else len(data)
    except UnicodeEncodeError:
        raise MalformedMessage("body is not encodable text (lone surrogate)") from None
    if size > max_bytes:
        raise MalformedMessage(f"XML body larger than {max_bytes} bytes")
    if not data or not data.strip():
        raise MalformedMessage("empty XML body")

    fields: dict[str, str] = {}
    text: list[str] = []  # character data since the last tag
    top: dict[str, None] = {}  # the root's children so far
    # Open elements below the root: [path, {child tag: count}, or None while it has no child].
    stack: list[list] = []
    depth = 0  # elements open: 1 inside the root

    # Every push runs these for each tag, so the common case (a root child) goes first.
    def start(tag: str, _attrs: object) -> str:
        nonlocal depth
        if text:
            _layout_only(text, stack[-1] if stack else ["xml", top or None])
        if "}" in tag:  # namespaced, spelt like ElementTree: {uri}local
            tag = "{" + tag
        if depth >= max_depth:
            raise MalformedMessage("XML nested too deeply")
        if depth == 1:
            if tag in top:  # top-level duplicates are always an error
                raise MalformedMessage(f"duplicate <{tag}>")
            top[tag] = None
            stack.append([tag, None])
        elif depth:
            parent = stack[-1]
            seen = parent[1]
            if seen is None:
                seen = parent[1] = {}
            count = seen.get(tag, 0)
            seen[tag] = count + 1
            # Nested repeats are numbered: a.b, a.b[1], ...
            path = f"{parent[0]}.{tag}[{count}]" if count else f"{parent[0]}.{tag}"
            stack.append([path, None])
        elif tag != "xml":
            raise MalformedMessage("root element is not <xml>")
        depth += 1
        return tag

    def end(_tag: str) -> None:
        nonlocal depth
        depth -= 1
        if depth:
            path, seen = stack.pop()
            if seen is None:  # a leaf: its text is the value
                fields[path] = "".join(text)
            elif text:  # text after the last child
                _layout_only(text, [path, seen])
            text.clear()
        elif text and top:  # the root's own text counts only beside children
            _layout_only(text, ["xml", top])

    parser = ParserCreate(None, "}")  # the namespace separator ElementTree uses
    parser.SetParamEntityParsing(XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _forbid_dtd
    parser.EntityDeclHandler = _forbid_entity
    parser.UnparsedEntityDeclHandler = _forbid_entity
    parser.ExternalEntityRefHandler = _forbid_external
    parser.buffer_text = True
    if tree is None:
        parser.StartElementHandler = start
        parser.EndElementHandler = end
        parser.CharacterDataHandler = text.append
    else:  # the same checks, each event also fed to the tree builder
        parser.StartElementHandler = lambda tag, attrs: tree.start(
            start(tag, attrs), {("{" + k if "}" in k else k): v for k, v in attrs.items()}
        )
        parser.EndElementHandler = lambda tag: (end(tag), tree.end(tag))
        parser.CharacterDataHandler = lambda chunk: (text.append(chunk), tree.data(chunk))
    try:
        parser.Parse(data, True)
    except (ExpatError, ValueError, TypeError) as exc:
        raise MalformedMessage(f"unparsable XML: {exc}") from None
    return fields


def _layout_only(text: list[str], frame: list) -> None:
    # Whitespace between elements is layout; any other text beside an element is refused.
    if "".join(text).strip():
        what = "mixed content in" if frame[1] is None else "stray text in"
        raise MalformedMessage(f"{what} <{frame[0]}>")
    text.clear()


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
