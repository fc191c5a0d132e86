"""A normalized copy of each grant's permission-set ids, so staff filters can use an index.

`Grant.set_ids` (a JSON list) stays the source of truth; `GrantSet` rows mirror it and are
kept in step by a flush hook (below), so every writer of grants maintains them for free.
Bulk loaders that bypass the ORM (`flask seed-volume`) insert them themselves.
"""

from sqlalchemy import ForeignKey, Index, delete, event, insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.models.audit import AuditEntry
from app.models.base import Base
from app.models.grants import AttentionItem, Authorizer, AuthorizerToken, Grant
from app.models.inbox import InboxEvent


class GrantSet(Base):
    """One permission set currently granted by one authorizer (keyed by authorizer: no join)."""

    __tablename__ = "grant_sets"
    __table_args__ = (Index("ix_grant_sets_set_id_authorizer_id", "set_id", "authorizer_id"),)

    authorizer_id: Mapped[int] = mapped_column(
        ForeignKey("authorizers.id", ondelete="CASCADE"), primary_key=True
    )
    set_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)


# Indexes the staff console's filters, sorts and charts need on other aggregates' tables; declared
# here so those models stay untouched (migration 0005_console_indexes creates them).
Index("ix_grants_authorized_at", Grant.authorized_at)
Index("ix_authorizers_nick_name", Authorizer.nick_name)
Index("ix_authorizers_account_type", Authorizer.account_type)
Index("ix_authorizer_tokens_consecutive_failures", AuthorizerToken.consecutive_failures)
Index("ix_attention_items_authorizer_appid", AttentionItem.authorizer_appid)
Index("ix_inbox_events_received_type_outcome", InboxEvent.received_at, InboxEvent.info_type,
      InboxEvent.outcome)  # fmt: skip
Index("ix_audit_entries_target", AuditEntry.target_type, AuditEntry.target_id)


def _set_ids_changed(grant: Grant) -> bool:
    from sqlalchemy import inspect

    return inspect(grant).attrs.set_ids.history.has_changes()


@event.listens_for(Session, "after_flush")
def _sync_grant_sets(session: Session, flush_context) -> None:
    """Mirror new, changed and deleted grants' set ids into grant_sets (same transaction)."""
    changed = [g for g in session.new if isinstance(g, Grant)]
    changed += [g for g in session.dirty if isinstance(g, Grant) and _set_ids_changed(g)]
    gone = [g.authorizer_id for g in session.deleted if isinstance(g, Grant)]
    ids = [g.authorizer_id for g in changed] + [i for i in gone if i is not None]
    if not ids:
        return
    connection = session.connection()
    connection.execute(delete(GrantSet).where(GrantSet.authorizer_id.in_(ids)))
    rows = [
        {"authorizer_id": g.authorizer_id, "set_id": int(s)}
        for g in changed
        for s in set(g.set_ids or [])
    ]
    if rows:
        connection.execute(insert(GrantSet), rows)
