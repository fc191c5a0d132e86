"""merchant experience: the provider's profile (name, logo), staff notes, idempotent consent

Revision ID: 0012_experience
Revises: 0005_console_indexes
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_experience"
down_revision = "0011_notifications"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "provider_profiles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("display_name", sa.String(length=64), nullable=False),
        sa.Column("logo", sa.LargeBinary(), nullable=True),
        sa.Column("logo_content_type", sa.String(length=32), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["updated_by_id"], ["users.id"],
            name=op.f("fk_provider_profiles_updated_by_id_users"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_profiles")),
    )  # fmt: skip
    op.create_table(
        "staff_notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("merchant_id", sa.Integer(), nullable=True),
        sa.Column("authorizer_id", sa.Integer(), nullable=True),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("author", sa.String(length=254), nullable=False),
        sa.Column("body", sa.String(length=2000), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"],
                                name=op.f("fk_staff_notes_merchant_id_merchants"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["authorizer_id"], ["authorizers.id"],
                                name=op.f("fk_staff_notes_authorizer_id_authorizers"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"],
                                name=op.f("fk_staff_notes_author_id_users"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_notes")),
    )  # fmt: skip
    op.create_index(op.f("ix_staff_notes_merchant_id"), "staff_notes", ["merchant_id"])
    op.create_index(op.f("ix_staff_notes_authorizer_id"), "staff_notes", ["authorizer_id"])
    with op.batch_alter_table("authorization_sessions") as batch:
        batch.add_column(sa.Column("consent_key", sa.String(length=43), nullable=True))
        batch.create_unique_constraint(
            op.f("uq_authorization_sessions_consent_key"), ["consent_key"]
        )


def downgrade():
    with op.batch_alter_table("authorization_sessions") as batch:
        batch.drop_constraint(op.f("uq_authorization_sessions_consent_key"), type_="unique")
        batch.drop_column("consent_key")
    op.drop_index(op.f("ix_staff_notes_authorizer_id"), table_name="staff_notes")
    op.drop_index(op.f("ix_staff_notes_merchant_id"), table_name="staff_notes")
    op.drop_table("staff_notes")
    op.drop_table("provider_profiles")
