"""custody under disorder (issue #11): grants remember the newest push applied; inbox dedupe
keys are stored hashed

Revision ID: 0006_custody_disorder
Revises: 0005_console_indexes
Create Date: 2026-12-01

grants.last_event_time is the newest WeChat CreateTime applied to a grant, so an older push never
undoes a newer state. inbox_events.dedupe_key now holds the SHA-256 of the event's dedupe key
(which may name the account): existing raw keys are hashed, and keys a purge had rewritten to
"purged:<sha256>" become that same hash, so copies arriving after a purge are still duplicates.
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0006_custody_disorder"
down_revision = "0005_console_indexes"
branch_labels = None
depends_on = None

PURGED_PREFIX = "purged:"


def upgrade():
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_event_time", sa.BigInteger(), nullable=True))
    _hash_dedupe_keys()


def _hash_dedupe_keys():
    connection = op.get_bind()
    rows = connection.execute(
        sa.text("SELECT id, dedupe_key FROM inbox_events ORDER BY id")
    ).all()
    # Purged rows first: a copy stored in clear after its original was purged (the defect
    # this revision fixes) is a duplicate of it, failing forever with the account in clear.
    rows.sort(key=lambda row: not row[1].startswith(PURGED_PREFIX))
    update = sa.text("UPDATE inbox_events SET dedupe_key = :key WHERE id = :id")
    delete = sa.text("DELETE FROM inbox_events WHERE id = :id")
    taken = set()
    for row_id, key in rows:
        if key.startswith(PURGED_PREFIX):
            hashed = key.removeprefix(PURGED_PREFIX)
        else:
            hashed = hashlib.sha256(key.encode("utf-8")).hexdigest()
        if hashed in taken:
            connection.execute(delete, {"id": row_id})
            continue
        taken.add(hashed)
        connection.execute(update, {"key": hashed, "id": row_id})


def downgrade():
    # Hashed keys cannot be turned back; they keep working as opaque unique keys.
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.drop_column("last_event_time")
