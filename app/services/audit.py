"""Writing the append-only audit log."""

from app.extensions import db
from app.models import AuditEntry, User


def record(
    action: str,
    *,
    actor: User | str | None = None,
    merchant_id: int | None = None,
    target_type: str | None = None,
    target_id: object = None,
    ip: str | None = None,
    **details,
) -> AuditEntry:
    """Add an audit entry to the current transaction; callers commit with their own work."""
    if isinstance(actor, User):
        actor_user_id, actor_label = actor.id, actor.email
    else:
        actor_user_id, actor_label = None, actor or "system"
    entry = AuditEntry(
        action=action,
        actor_user_id=actor_user_id,
        actor=actor_label,
        merchant_id=merchant_id,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        details=details,
        ip=ip,
    )
    db.session.add(entry)
    return entry
