"""The durable outboxes (grant webhooks, email, alert notifications) share one way to take work.

A row is due while `pending` and past `next_attempt_at`; a process takes it by setting a short
lease with a guarded UPDATE, so any number of workers on any number of hosts send it once.
"""

from collections.abc import Iterator
from datetime import timedelta

from sqlalchemy import or_, select, update

from app.extensions import db
from app.services import clock


def claim_due(model, lease: timedelta, *, limit: int, where=()) -> Iterator:
    """Yield each due row of `model` (oldest first) once this process holds its lease."""
    now = clock.now()
    free = or_(model.lease_until.is_(None), model.lease_until < now)
    due = (model.status == "pending", model.next_attempt_at <= now, free, *where)
    for row_id in list(
        db.session.scalars(select(model.id).where(*due).order_by(model.id).limit(limit))
    ):
        claimed = db.session.execute(
            update(model)
            .where(model.id == row_id, model.status == "pending", free)
            .values(lease_until=now + lease)
            .execution_options(synchronize_session=False)
        ).rowcount
        db.session.commit()
        if claimed == 1:
            yield db.session.get(model, row_id)
