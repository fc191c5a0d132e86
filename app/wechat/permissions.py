"""The permission-set catalog (data/permission_sets.json) with zh/en names. Reference §5."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = [
    "ACCOUNT_TYPES",
    "PermissionSet",
    "catalog",
    "get",
    "for_account_type",
    "name",
    "description",
    "is_exclusive",
    "normalize_locale",
]

ACCOUNT_TYPES = ("official_account", "mini_program")
_DATA = Path(__file__).parent / "data" / "permission_sets.json"
_UNKNOWN_NAME = {"zh": "权限集 {id}", "en": "Permission set {id}"}
_UNKNOWN_DESCRIPTION = {
    "zh": "微信新增或未公开说明的权限集，具体能力请以微信授权页面为准。",
    "en": "A permission set WeChat has not described publicly; its WeChat authorization page "
    "shows what it allows.",
}


def normalize_locale(locale: str | None) -> str:
    """Map any locale (zh_CN, zh-Hans, en_US, None) to "zh" or "en". Reference §5."""
    return "zh" if (locale or "").lower().replace("-", "_").startswith("zh") else "en"


@dataclass(frozen=True)
class PermissionSet:
    """One permission set: id, names, plain-language descriptions, scope. Reference §5.2, §5.3."""

    id: int
    name_zh: str
    name_en: str
    description_zh: str
    description_en: str
    account_types: tuple[str, ...]
    exclusive: bool | None  # None: WeChat's table did not say
    confirmed: bool  # False: seen only in third-party code (§5.3 UNCERTAIN)

    def name(self, locale: str | None = "zh") -> str:
        """Display name in the given locale. Reference §5."""
        return self.name_zh if normalize_locale(locale) == "zh" else self.name_en

    def description(self, locale: str | None = "zh") -> str:
        """One-line merchant-facing description in the given locale. Reference §5."""
        return self.description_zh if normalize_locale(locale) == "zh" else self.description_en

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> PermissionSet:
        """Build from one JSON row, validating it. Reference §5."""
        item = cls(
            id=int(row["id"]),
            name_zh=row["name"]["zh"].strip(),
            name_en=row["name"]["en"].strip(),
            description_zh=row["description"]["zh"].strip(),
            description_en=row["description"]["en"].strip(),
            account_types=tuple(row["account_types"]),
            exclusive=row.get("exclusive"),
            confirmed=bool(row.get("confirmed", True)),
        )
        texts = (item.name_zh, item.name_en, item.description_zh, item.description_en)
        if item.id < 1 or not all(texts):
            raise ValueError(f"permission set {row.get('id')}: empty text or bad id")
        if not item.account_types or set(item.account_types) - set(ACCOUNT_TYPES):
            raise ValueError(f"permission set {item.id}: bad account_types")
        if item.exclusive not in (True, False, None):
            raise ValueError(f"permission set {item.id}: exclusive must be true/false/null")
        return item


@cache
def catalog() -> Mapping[int, PermissionSet]:
    """All known permission sets by id, loaded once from the JSON data. Reference §5."""
    rows = json.loads(_DATA.read_text(encoding="utf-8"))["permission_sets"]
    items: dict[int, PermissionSet] = {}
    for row in rows:
        item = PermissionSet.from_json(row)
        if item.id in items:
            raise ValueError(f"duplicate permission set id {item.id}")
        items[item.id] = item
    return MappingProxyType(dict(sorted(items.items())))


def get(set_id: int) -> PermissionSet | None:
    """The catalog entry for an id, or None for ids we do not know yet. Reference §5.3."""
    return catalog().get(int(set_id))


def for_account_type(account_type: str) -> tuple[PermissionSet, ...]:
    """Entries that apply to `official_account` or `mini_program`, by id. Reference §5.2, §5.3."""
    if account_type not in ACCOUNT_TYPES:
        raise ValueError(f"account_type must be one of {ACCOUNT_TYPES}")
    return tuple(item for item in catalog().values() if account_type in item.account_types)


def name(set_id: int, locale: str | None = "zh") -> str:
    """Display name; unknown ids read "权限集 N" / "Permission set N". Reference §5.3."""
    item = get(set_id)
    return item.name(locale) if item else _UNKNOWN_NAME[normalize_locale(locale)].format(id=set_id)


def description(set_id: int, locale: str | None = "zh") -> str:
    """Merchant-facing description; a neutral sentence for unknown ids. Reference §5."""
    item = get(set_id)
    return item.description(locale) if item else _UNKNOWN_DESCRIPTION[normalize_locale(locale)]


def is_exclusive(set_id: int) -> bool | None:
    """True if only one platform may hold it; None when unknown. Reference §5.1."""
    item = get(set_id)
    return item.exclusive if item else None
