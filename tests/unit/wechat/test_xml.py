"""Hardened XML reading: every refusal on the one-pass parser, and a differential check against
the defusedxml ElementTree path it replaced (kept here as the oracle). Reference §1.6, §1.8, §2."""

from __future__ import annotations

import time
from xml.etree.ElementTree import Element, ParseError, tostring

import pytest
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from app.wechat import _xml, errors
from app.wechat._xml import (
    MAX_DEPTH,
    MAX_XML_BYTES,
    build_xml,
    cdata,
    flatten,
    parse_fields,
    parse_root,
    unique_children,
)
from app.wechat.crypto import MessageCrypto
from app.wechat.events import build_message_xml, parse_event, parse_message
from tests.unit.wechat.conftest import APPID

TS, NONCE = "1714112445", "415670741"
REJECTED = "rejected"


# --- the replaced path, verbatim: defusedxml ElementTree, then the shape walk ----------------


def defused_parse_root(data: bytes | str, *, max_bytes: int = MAX_XML_BYTES) -> Element:
    """The parse_root that the one-pass parser replaced (kept as the differential oracle)."""
    try:
        size = len(data.encode("utf-8")) if isinstance(data, str) else len(data)
    except UnicodeEncodeError:
        raise errors.MalformedMessage("body is not encodable text (lone surrogate)") from None
    if size > max_bytes:
        raise errors.MalformedMessage(f"XML body larger than {max_bytes} bytes")
    if not data or not data.strip():
        raise errors.MalformedMessage("empty XML body")
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise errors.MalformedMessage(f"forbidden XML construct: {type(exc).__name__}") from None
    except (ParseError, ValueError, TypeError) as exc:
        raise errors.MalformedMessage(f"unparsable XML: {exc}") from None
    if root.tag != "xml":
        raise errors.MalformedMessage("root element is not <xml>")
    _defused_check_shape(root, 1)
    return root


def _defused_check_shape(element: Element, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise errors.MalformedMessage("XML nested too deeply")
    children = list(element)
    if children and (element.text or "").strip():
        raise errors.MalformedMessage(f"mixed content in <{element.tag}>")
    for child in children:
        if (child.tail or "").strip():
            raise errors.MalformedMessage(f"stray text after <{child.tag}>")
        _defused_check_shape(child, depth + 1)


def _outcome(parse, data):
    try:
        return parse(data)
    except errors.MalformedMessage as exc:
        assert exc.code == -40002
        return REJECTED


def _old_fields(data):
    return _outcome(lambda d: list(flatten(defused_parse_root(d)).items()), data)


def _new_fields(data):
    return _outcome(lambda d: list(parse_fields(d).items()), data)


def _old_tree(data):
    def parse(d):
        root = defused_parse_root(d)
        unique_children(root)  # every caller of the old parse_root refused these next
        return tostring(root)

    return _outcome(parse, data)


def _new_tree(data):
    return _outcome(lambda d: tostring(parse_root(d)), data)


def _rejected_everywhere(data) -> None:
    """Refused by the new parser in both outputs and, as inner XML, by both typed parsers."""
    for parse in (parse_fields, parse_root, parse_event, parse_message):
        with pytest.raises(errors.MalformedMessage) as info:
            parse(data)
        assert info.value.code == -40002


# --- every hardening, on the new path --------------------------------------------------------

BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa">'
    + "".join(
        f'<!ENTITY {n} "{("&" + p + ";") * 10}">'
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "]><xml><Content>&i;</Content></xml>"
)
HOSTILE = {
    "dtd": "<!DOCTYPE xml><xml><A>1</A></xml>",
    "external_dtd": '<!DOCTYPE xml SYSTEM "http://127.0.0.1:9/x.dtd"><xml><A>1</A></xml>',
    "public_dtd": '<!DOCTYPE xml PUBLIC "-//X//Y" "http://127.0.0.1:9/x.dtd"><xml/>',
    "internal_entity": '<!DOCTYPE xml [<!ENTITY x "y">]><xml><A>&x;</A></xml>',
    "external_entity": (
        '<!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><A>&e;</A></xml>'
    ),
    "parameter_entity": (
        '<!DOCTYPE xml [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]><xml><A>1</A></xml>'
    ),
    "internal_parameter_entity": (
        "<!DOCTYPE xml [<!ENTITY % p \"<!ENTITY x 'y'>\"> %p;]><xml><A>&x;</A></xml>"
    ),
    "unparsed_entity": (
        '<!DOCTYPE xml [<!NOTATION n SYSTEM "x"><!ENTITY u SYSTEM "x" NDATA n>]><xml/>'
    ),
    "billion_laughs": BILLION_LAUGHS,
    "undeclared_entity": "<xml><A>&x;</A></xml>",
    "non_xml_root": "<root><A>1</A></root>",
    "namespaced_root": '<xml xmlns="urn:x"><A>1</A></xml>',
    "unbound_prefix": "<xml><p:A>1</p:A></xml>",
    "mixed_content": "<xml><A>text<B>1</B></A></xml>",
    "mixed_content_root": "<xml>text<A>1</A></xml>",
    "stray_text_between": "<xml><A>1</A>junk<B>2</B></xml>",
    "stray_text_after": "<xml><A><B>1</B>junk</A></xml>",
    "duplicate_top_level": "<xml><A>1</A><A>2</A></xml>",
    "too_deep": "<xml>" + "<A>" * MAX_DEPTH + "x" + "</A>" * MAX_DEPTH + "</xml>",
    "much_too_deep": "<xml>" + "<A>" * 5000 + "</A>" * 5000 + "</xml>",
    "unclosed": "<xml><A>1</A>",
    "junk_after_root": "<xml><A>1</A></xml><xml/>",
    "raw_cdata_end": "<xml><A>a]]>b</A></xml>",
    "nul": "<xml><A>\x00</A></xml>",
    "control_char_reference": "<xml><A>&#1;</A></xml>",
    "empty": "",
    "blank": " \n\t ",
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_xml_is_refused_like_the_defusedxml_path(name: str) -> None:
    xml = HOSTILE[name]
    for data in (xml, xml.encode("utf-8")):
        _rejected_everywhere(data)
        assert _old_fields(data) == REJECTED  # the oracle agrees


def test_billion_laughs_is_refused_before_any_expansion() -> None:
    started = time.perf_counter()
    with pytest.raises(errors.MalformedMessage, match="DTD"):
        parse_fields(BILLION_LAUGHS)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    "name", ["internal_entity", "external_entity", "parameter_entity", "unparsed_entity"]
)
def test_entity_locks_hold_even_without_the_dtd_lock(monkeypatch, name: str) -> None:
    # Second lock: were DTDs ever let through, entity declarations would still be refused.
    monkeypatch.setattr(_xml, "_forbid_dtd", lambda *args: None)
    with pytest.raises(errors.MalformedMessage, match="entity declaration"):
        parse_fields(HOSTILE[name])


def test_no_external_resource_is_read_even_without_the_dtd_lock(monkeypatch) -> None:
    monkeypatch.setattr(_xml, "_forbid_dtd", lambda *args: None)
    # The external subset is never fetched (parameter-entity parsing is off): parsing goes on
    # without it, and nothing declared there could have been used.
    assert parse_fields(HOSTILE["external_dtd"]) == {"A": "1"}


def test_size_cap_counts_encoded_bytes() -> None:
    pad = MAX_XML_BYTES - len("<xml><A></A></xml>")
    assert parse_fields("<xml><A>" + "p" * pad + "</A></xml>")["A"] == "p" * pad
    for data in (
        "<xml><A>" + "p" * (pad + 1) + "</A></xml>",
        "<xml><A>" + "微" * pad + "</A></xml>",
    ):
        with pytest.raises(errors.MalformedMessage, match="larger"):
            parse_fields(data)
        with pytest.raises(errors.MalformedMessage, match="larger"):
            parse_fields(data.encode())
    assert len(parse_fields("<xml><A>" + "p" * 100 + "</A></xml>", max_bytes=200)["A"]) == 100
    with pytest.raises(errors.MalformedMessage, match="larger"):
        parse_fields("<xml><A>" + "p" * 200 + "</A></xml>", max_bytes=200)


def test_depth_cap() -> None:
    ok = "<xml>" + "<A>" * (MAX_DEPTH - 1) + "x" + "</A>" * (MAX_DEPTH - 1) + "</xml>"
    assert parse_fields(ok) == {".".join(["A"] * (MAX_DEPTH - 1)): "x"}
    with pytest.raises(errors.MalformedMessage, match="deeply"):
        parse_fields(HOSTILE["too_deep"])
    assert parse_fields("<xml><A>1</A></xml>", max_depth=2) == {"A": "1"}
    with pytest.raises(errors.MalformedMessage, match="deeply"):
        parse_fields("<xml><A><B>1</B></A></xml>", max_depth=2)


def test_layout_whitespace_is_not_mixed_content() -> None:
    xml = "<xml>\n  <A>1</A>\r\n\t<B>\n    <C>2</C>\u3000\n  </B>\n</xml>\n"
    assert parse_fields(xml) == {"A": "1", "B.C": "2"}
    assert parse_fields("<xml>only text</xml>") == {}  # a leaf root carries no fields


def test_duplicates_only_at_top_level_are_refused() -> None:
    xml = "<xml><A><B>1</B><B>2</B><C>3</C><B>4</B></A></xml>"
    assert parse_fields(xml) == {"A.B": "1", "A.B[1]": "2", "A.C": "3", "A.B[2]": "4"}
    with pytest.raises(errors.MalformedMessage, match="duplicate"):
        parse_fields("<xml><A>1</A><B>2</B><A>3</A></xml>")
    with pytest.raises(errors.MalformedMessage, match="duplicate"):
        parse_root("<xml><A>1</A><A>2</A></xml>")


@pytest.mark.parametrize(
    "data",
    [b"<xml><A>\xff</A></xml>", b"<xml><A>\xc3</A></xml>", b"<xml><A>\xed\xa0\x80</A></xml>"],
    ids=["invalid_byte", "truncated_sequence", "encoded_surrogate"],
)
def test_invalid_utf8_is_refused(data: bytes) -> None:
    _rejected_everywhere(data)


def test_lone_surrogate_is_refused() -> None:
    _rejected_everywhere("<xml><A>\ud800</A></xml>")
    with pytest.raises(errors.MalformedMessage, match="surrogate"):
        parse_fields("<xml><A>\udfff</A></xml>")


def test_cdata_with_its_own_terminator_round_trips() -> None:
    value = "a]]>b]]]]>c]]"
    assert parse_fields(build_xml({"A": value}))["A"] == value
    assert parse_fields("<xml><A><![CDATA[a]]]]><![CDATA[>b]]></A></xml>")["A"] == "a]]>b"


def test_carriage_returns_survive_as_references_and_raw_ones_are_normalised() -> None:
    assert parse_fields(build_xml({"A": "x\r\ny\rz"}))["A"] == "x\r\ny\rz"
    assert parse_fields("<xml><A>&#13;&#xD;\r\n\r</A></xml>")["A"] == "\r\r\n\n"
    assert parse_fields("<xml><A><![CDATA[a\r\nb]]></A></xml>")["A"] == "a\nb"


def test_parse_root_still_gives_the_element_tree() -> None:
    root = parse_root('<xml>\n <A k="v">1</A>\n <B><C>2</C><C/></B>\n</xml>')
    assert root.tag == "xml" and root.text == "\n "
    children = unique_children(root)
    assert children["A"].attrib == {"k": "v"} and children["A"].tail == "\n "
    assert flatten(root) == {"A": "1", "B.C": "2", "B.C[1]": ""}


# --- envelopes: flat by construction ---------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "<xml><ToUserName><x>gh</x></ToUserName><Encrypt>abc</Encrypt></xml>",
        "<xml><AppId><x>a</x></AppId><ToUserName>g</ToUserName><Encrypt>abc</Encrypt></xml>",
        "<xml><ToUserName>g</ToUserName><Encrypt>abc</Encrypt><Extra><x/></Extra></xml>",
        "<xml><ToUserName>g</ToUserName><ToUserName>h</ToUserName><Encrypt>abc</Encrypt></xml>",
        "<xml><AppId>a</AppId><ToUserName>g</ToUserName><Encrypt>abc</Encrypt></xml>",
        "<xml><ToUserName>g</ToUserName>stray<Encrypt>abc</Encrypt></xml>",
        '<!DOCTYPE xml [<!ENTITY x "y">]>'
        "<xml><ToUserName>&x;</ToUserName><Encrypt>a</Encrypt></xml>",
    ],
)
def test_envelopes_are_flat(crypto: MessageCrypto, body: str) -> None:
    with pytest.raises(errors.MalformedMessage):
        crypto.open_message(body, "0" * 40, TS, NONCE)
    with pytest.raises(errors.MalformedMessage):
        crypto.open_reply(body)


def test_text_message_push_through_the_new_path(crypto: MessageCrypto) -> None:
    inner = build_message_xml("gh_1", "o\r1", 5, "text", Content="a]]>\r\n微", MsgId=9)
    body, sig = crypto.encrypt_message(inner, TS, NONCE, to_user_name="gh_1")
    opened = crypto.open_message(body.encode(), sig, TS, NONCE)
    assert (opened.outer_tag, opened.outer_value) == ("ToUserName", "gh_1")
    message = parse_message(opened.xml)
    assert (message.from_user_name, message.content, message.msg_id) == ("o\r1", "a]]>\r\n微", "9")
    assert message.fields == flatten(defused_parse_root(inner))


# --- differential: same fields and same refusals as the defusedxml path ----------------------

TAGS = st.sampled_from(
    ["ToUserName", "FromUserName", "CreateTime", "MsgType", "Content", "MsgId", "Event"]
    + ["EventKey", "item", "info", "A", "a.b", "x-y", "_z", "名", "p:A"]
)
# Text XML can carry, plus the characters that need care (CR, "]]>", markup).
TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))
    | st.sampled_from("\r\n\t ]]>&<\u3000"),
    max_size=12,
)
TREE = st.recursive(
    TEXT, lambda children: st.lists(st.tuples(TAGS, children), max_size=4), max_leaves=10
)
# Faults, each the kind of thing the parser must refuse or must tolerate exactly as before.
TEXT_BETWEEN_TAGS = st.sampled_from(
    ["x", " x ", "&amp;", "&#32;", "\u3000", "<!-- c -->", "<?pi x?>", "<![CDATA[ ]]>", "\xa0"]
)
BAD_TEXT = st.sampled_from(["\x01", "\ufffe", "\ud800", "&x;", "&#0;", "a]]>b", "<", "&"])
HOSTILE_BITS = st.sampled_from(
    [
        '<!DOCTYPE xml [<!ENTITY x "y">]>',
        "<!DOCTYPE xml>",
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<A>t</A>",
        "</A>",
        "<",
        "&x;",
        "\ufeff",
        "<!-- c -->",
    ]
)


@st.composite
def wechat_style_xml(draw) -> str:
    """Documents shaped like WeChat's (<xml>, leaves in CDATA or escaped, optional layout), with
    some faults: text beside elements, duplicates, depth at and past the cap, namespaces, bad
    characters, DTDs and other fragments spliced in anywhere."""
    layout = draw(st.sampled_from(["", "\n", "\n  ", " \t"]))
    fault_rate = draw(st.sampled_from([0, 0, 10, 30]))  # percent, per place a fault can go

    def fault() -> bool:
        return draw(st.integers(0, 99)) < fault_rate

    def between() -> str:
        return draw(TEXT_BETWEEN_TAGS) if fault() else layout

    def text(value: str) -> str:
        if fault():
            return value + draw(BAD_TEXT)
        if draw(st.booleans()):
            return cdata(value)
        return (value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")).replace(
            "\r", "&#13;"
        )

    def element(tag: str, node) -> str:
        if isinstance(node, str):
            return f"<{tag}>{text(node)}</{tag}>"
        inner = "".join(between() + element(t, n) for t, n in node)
        return f"<{tag}>{inner}{between()}</{tag}>"

    top = draw(st.lists(st.tuples(TAGS, TREE), max_size=6, unique_by=lambda item: item[0]))
    if top and draw(st.integers(0, 7)) == 0:
        top.append(draw(st.sampled_from(top)))  # a duplicate top-level tag
    if draw(st.integers(0, 3)) == 0:  # reach the depth cap, from either side
        for _ in range(draw(st.integers(MAX_DEPTH - 3, MAX_DEPTH))):
            top = [("item", top)]
    root = draw(st.sampled_from(["root", "p:xml"])) if draw(st.integers(0, 15)) == 0 else "xml"
    xml = element(root, top)
    if draw(st.booleans()):  # namespaced tags (p:A) are bound, spelt {urn:p}A in the fields
        xml = xml.replace("<xml>", '<xml xmlns:p="urn:p">', 1)
    if fault():
        at = draw(st.integers(0, len(xml)))
        xml = xml[:at] + draw(HOSTILE_BITS) + xml[at:]
    return xml


DIFFERENTIAL = settings(
    max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@seed(20260515)
@DIFFERENTIAL
@given(xml=wechat_style_xml(), as_bytes=st.booleans())
def test_same_fields_and_refusals_as_the_defusedxml_path(xml: str, as_bytes: bool) -> None:
    data = xml.encode("utf-8", "surrogatepass") if as_bytes else xml
    old = _old_fields(data)
    assert _new_fields(data) == old  # same fields in the same order, or both refused
    assert _new_tree(data) == _old_tree(data)


@seed(20260516)
@DIFFERENTIAL
@given(data=st.binary(max_size=200) | st.text(max_size=200))
def test_arbitrary_input_is_refused_alike(data) -> None:
    assert _new_fields(data) == _old_fields(data)


def test_generated_documents_are_mostly_accepted_and_sometimes_refused() -> None:
    # Guard against a differential test that only ever compares two refusals.
    outcomes = {"accepted": 0, "rejected": 0}

    @seed(20260517)
    @settings(max_examples=300, deadline=None)
    @given(xml=wechat_style_xml())
    def count(xml: str) -> None:
        outcomes["rejected" if _new_fields(xml) == REJECTED else "accepted"] += 1

    count()
    assert outcomes["accepted"] > 60 and outcomes["rejected"] > 30, outcomes


def test_a_typical_push_matches_the_oracle(crypto: MessageCrypto) -> None:
    inner = build_message_xml("gh_3c884a361561", "oia2Tjj", 1714112445, "text", Content="你好")
    body, _ = crypto.encrypt_message(inner, TS, NONCE, to_user_name="gh_3c884a361561")
    for data in (inner, body, body.encode()):
        assert _new_fields(data) == _old_fields(data) != REJECTED
    assert parse_fields(body)["ToUserName"] == "gh_3c884a361561" and APPID
