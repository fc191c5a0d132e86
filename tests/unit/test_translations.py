"""Every user-facing string has a Simplified Chinese translation with the same placeholders."""

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "app/translations/zh_Hans_CN/LC_MESSAGES/messages.po"
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None, "_l": None}
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def extracted_msgids() -> set[str]:
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    found = set()
    # Babel skips folders starting with "_" by default; our templates/_macros must be read too.
    for _file, _line, message, _comments, _context in extract_from_dir(
        ROOT / "app",
        method_map=method_map,
        keywords=KEYWORDS,
        directory_filter=lambda path: not Path(path).name.startswith((".", "__pycache__")),
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def zh_catalog():
    with CATALOG.open("rb") as handle:
        return read_po(handle, locale="zh_CN")


def test_every_msgid_has_a_chinese_translation():
    catalog = zh_catalog()
    untranslated = sorted(
        msgid
        for msgid in extracted_msgids()
        if msgid not in catalog or not catalog[msgid].string or catalog[msgid].fuzzy
    )
    assert untranslated == [], "run `make extract-messages` and translate these"


def test_translations_keep_their_placeholders():
    for message in zh_catalog():
        if message.id and isinstance(message.id, str) and message.string:
            assert set(PLACEHOLDER.findall(message.id)) == set(
                PLACEHOLDER.findall(message.string)
            ), message.id
