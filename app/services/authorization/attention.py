"""Staff attention items: conflicts and gaps that need a person (never silent changes)."""

from __future__ import annotations

import re
from typing import NamedTuple

from sqlalchemy import select

from app.current_platform import account_ref
from app.extensions import db
from app.models import AttentionItem, User
from app.services import audit, clock


def open_attention(
    kind: str,
    *,
    appid: str | None = None,
    merchant_id: int | None = None,
    session_id: int | None = None,
    details: dict | None = None,
) -> AttentionItem:
    """Raise (or find the open) staff attention item for this kind and account."""
    key = f"{kind}:{account_ref(appid) if appid else ''}:{session_id or ''}"
    item = db.session.scalar(select(AttentionItem).where(AttentionItem.dedupe_key == key))
    if item is not None:
        return item
    item = AttentionItem(
        kind=kind,
        dedupe_key=key,
        merchant_id=merchant_id,
        session_id=session_id,
        authorizer_appid=appid,
        appid_hash=account_ref(appid) if appid else None,
        details=details or {},
        created_at=clock.now(),
    )
    db.session.add(item)
    db.session.flush()
    return item


def resolve_attention(item: AttentionItem, *, actor: User | None, resolution: str) -> None:
    """Close a staff attention item."""
    item.resolved_at, item.resolved_by_id = clock.now(), actor.id if actor else None
    item.resolution, item.dedupe_key = resolution[:255], None
    audit.record(
        "attention.resolved",
        actor=actor,
        merchant_id=item.merchant_id,
        target_type="attention_item",
        target_id=item.id,
        kind=item.kind,
    )
    db.session.commit()


# How staff closed an item, stored as words ("assigned to merchant 12", "dismissed: duplicate").
_RESOLUTIONS = {"assigned": "assigned to merchant", "adopted": "adopted into merchant"}
_STORED = re.compile(
    r"^(?:(assigned|adopted) (?:to|into) merchant (\d+)|(dismissed)(?:: (.*))?)$", re.S
)


class Resolution(NamedTuple):
    how: str | None  # "assigned", "adopted", "dismissed"; None for words written otherwise
    merchant_id: int | None = None
    note: str = ""


def resolution_words(how: str, *, merchant_id: int | None = None, note: str = "") -> str:
    """What resolve_attention stores for `how` ("assigned"/"adopted" with a merchant, or
    "dismissed" with an optional note); read back by read_resolution."""
    if how == "dismissed":
        return "dismissed" + (f": {note.strip()}" if note.strip() else "")
    return f"{_RESOLUTIONS[how]} {merchant_id}"


def read_resolution(stored: str | None) -> Resolution:
    """A stored resolution as its parts, so pages can name it in the reader's language."""
    found = _STORED.match(stored or "")
    if found is None:
        return Resolution(None, note=stored or "")
    if found.group(3):
        return Resolution("dismissed", note=found.group(4) or "")
    return Resolution(found.group(1), merchant_id=int(found.group(2)))
