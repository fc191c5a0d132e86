"""Relayed messages are end users' data: kept RELAY_RETENTION_HOURS, and gone with their account.

`delete_expired` (the `relay_retention` job) deletes messages received longer ago than that, with
their deliveries, in batches. `purge_account` deletes everything of one account (the account
purge calls it). Deliveries are deleted explicitly, not left to the foreign keys' cascade.
"""

from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, select

from app.extensions import db
from app.models import RelayDelivery, RelayMessage
from app.services import clock
from app.services.relay import outbox

BATCH = 1000  # messages per transaction


def delete_expired(*, batch: int = BATCH) -> int:
    """Delete messages (and their deliveries) past retention; returns how many messages went."""
    cutoff = clock.now() - timedelta(hours=int(current_app.config["RELAY_RETENTION_HOURS"]))
    total = 0
    while True:
        ids = list(
            db.session.scalars(
                select(RelayMessage.id)
                .where(RelayMessage.received_at < cutoff)
                .order_by(RelayMessage.id)
                .limit(batch)
            )
        )
        if not ids:
            return total
        _delete_messages(ids)
        db.session.commit()
        total += len(ids)


def _delete_messages(ids: list[int]) -> None:
    """Delete these messages; a group whose pending head goes lets its next message go."""
    held = select(RelayDelivery.id).where(
        RelayDelivery.message_id.in_(ids), RelayDelivery.status == "pending"
    )
    if db.session.scalar(held.limit(1)) is None:
        _delete_rows(ids)
        return
    with outbox.taking_turns():  # the outbox must not park what becomes a head meanwhile
        groups = db.session.execute(
            select(RelayDelivery.route_id, RelayDelivery.authorizer_id)
            .where(RelayDelivery.message_id.in_(ids), RelayDelivery.status == "pending")
            .distinct()
        ).all()
        _delete_rows(ids)
        outbox.release_groups([(route_id, account_id) for route_id, account_id in groups])


def _delete_rows(ids: list[int]) -> None:
    db.session.execute(delete(RelayDelivery).where(RelayDelivery.message_id.in_(ids)))
    db.session.execute(delete(RelayMessage).where(RelayMessage.id.in_(ids)))


def purge_account(authorizer_id: int) -> int:
    """Delete an account's messages and every delivery of them, in the caller's transaction;
    returns how many messages went. Whole groups go, so no other group is affected."""
    db.session.execute(delete(RelayDelivery).where(RelayDelivery.authorizer_id == authorizer_id))
    return db.session.execute(
        delete(RelayMessage).where(RelayMessage.authorizer_id == authorizer_id)
    ).rowcount
