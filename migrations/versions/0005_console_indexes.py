"""staff console: grant_sets (permission sets per authorizer) and the indexes its filters need

Revision ID: 0005_console_indexes
Revises: 0003_grants_tokens
Create Date: 2026-11-24

grant_sets mirrors grants.set_ids (kept in step by a flush hook in app/models/grant_sets.py), so
"granted / missing permission set X" is an index lookup instead of a scan of JSON lists. The
backfill below fills it for grants that exist before this revision.
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0005_console_indexes"
down_revision = "0003_grants_tokens"  # re-point to 0004_merchant_consent if that lands first
branch_labels = None
depends_on = None

INDEXES = [
    ("ix_grants_authorized_at", "grants", ["authorized_at"]),
    ("ix_authorizers_nick_name", "authorizers", ["nick_name"]),
    ("ix_authorizers_account_type", "authorizers", ["account_type"]),
    ("ix_authorizer_tokens_consecutive_failures", "authorizer_tokens", ["consecutive_failures"]),
    ("ix_attention_items_authorizer_appid", "attention_items", ["authorizer_appid"]),
    ("ix_inbox_events_received_type_outcome", "inbox_events",
     ["received_at", "info_type", "outcome"]),
    ("ix_audit_entries_target", "audit_entries", ["target_type", "target_id"]),
]  # fmt: skip


def upgrade():
    op.create_table(
        "grant_sets",
        sa.Column("authorizer_id", sa.Integer(), nullable=False),
        sa.Column("set_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.ForeignKeyConstraint(
            ["authorizer_id"], ["authorizers.id"],
            name=op.f("fk_grant_sets_authorizer_id_authorizers"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("authorizer_id", "set_id", name=op.f("pk_grant_sets")),
    )  # fmt: skip
    op.create_index("ix_grant_sets_set_id_authorizer_id", "grant_sets", ["set_id", "authorizer_id"])
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)
    _backfill()


def _backfill():
    connection = op.get_bind()
    grants = connection.execute(sa.text("SELECT authorizer_id, set_ids FROM grants")).all()
    rows = []
    for authorizer_id, set_ids in grants:
        ids = json.loads(set_ids) if isinstance(set_ids, str) else (set_ids or [])
        rows += [{"authorizer_id": authorizer_id, "set_id": int(i)} for i in set(ids)]
    if rows:
        table = sa.table("grant_sets", sa.column("authorizer_id"), sa.column("set_id"))
        op.bulk_insert(table, rows)


def downgrade():
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    op.drop_index("ix_grant_sets_set_id_authorizer_id", table_name="grant_sets")
    op.drop_table("grant_sets")
