"""Staff attention items: conflicts and gaps that need a person (never silent changes)."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import AttentionItem, User
from app.models.grants import appid_ref
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
    key = f"{kind}:{appid_ref(appid) if appid else ''}:{session_id or ''}"
    item = db.session.scalar(select(AttentionItem).where(AttentionItem.dedupe_key == key))
    if item is not None:
        return item
    item = AttentionItem(
        kind=kind,
        dedupe_key=key,
        merchant_id=merchant_id,
        session_id=session_id,
        authorizer_appid=appid,
        appid_hash=appid_ref(appid) if appid else None,
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
