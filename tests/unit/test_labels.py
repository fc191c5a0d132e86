"""Values that code stores and pages show have names in both languages (not only msgids)."""

import re

from flask_babel import force_locale

from app.labels import VOCABULARIES, label
from app.models import GrantStatus, SessionStatus
from app.wechat import events
from tests.unit.test_translations import zh_catalog


def test_every_enum_member_has_a_label():
    assert {s.value for s in SessionStatus} <= VOCABULARIES["session_status"].keys()
    assert {s.value for s in GrantStatus} <= VOCABULARIES["grant_status"].keys()
    info_types = {v for k, v in vars(events).items() if k.startswith("INFO_")}
    assert info_types <= VOCABULARIES["info_type"].keys()


def test_every_change_kind_and_source_the_services_write_has_a_label():
    from pathlib import Path

    # Grant changes are written by the authorization, custody and console services only (other
    # packages use `kind=` for their own vocabularies, e.g. alert kinds).
    folders = ("authorization", "custody", "console")
    source = "\n".join(
        p.read_text() for folder in folders for p in Path("app/services", folder).rglob("*.py")
    )
    kinds = set(re.findall(r'kind(?:, old)? = "(\w+)"', source))
    kinds |= set(re.findall(r'kind="(\w+)"', source))
    sources = set(re.findall(r'source="(\w+)"', source))
    assert kinds and sources
    assert kinds <= VOCABULARIES["change_kind"].keys(), kinds
    assert sources <= VOCABULARIES["change_source"].keys(), sources


def test_every_label_is_translated_and_differs_from_the_raw_value(app):
    catalog = zh_catalog()
    for name, vocabulary in VOCABULARIES.items():
        for value, text in vocabulary.items():
            msgid = text._args[0]
            assert msgid in catalog and catalog[msgid].string, (name, value)
            with app.test_request_context(), force_locale("zh_CN"):
                assert label(name, value) != value, (name, value)
                assert not re.search(r"[A-Za-z]{3,}", label(name, value)), (name, value)


def test_unknown_values_stay_visible(app):
    with app.test_request_context():
        assert label("change_kind", "brand_new") == "brand_new"
        assert label("session_status", None) == "—"
