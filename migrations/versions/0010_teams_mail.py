"""merchant teams (viewer role, invitation roles and revocation), password resets, mail outbox

Revision ID: 0010_teams_mail
Revises: 0005_console_indexes
Create Date: 2026-12-01

Issue #12. Merchant users may now be `merchant_viewer` too (the users check constraint widens);
invitations carry the role they grant, can be withdrawn, and keep their link encrypted so an
administrator can copy or resend it. Password-reset requests wait for the worker (so the page
does the same work for every address); reset links are stored as hashes. Outgoing email
waits in mail_outbox (bodies encrypted) until the worker sends it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_teams_mail"
down_revision = "0005_console_indexes"
branch_labels = None
depends_on = None

ROLES = ("merchant_admin", "provider_staff", "merchant_viewer")
OLD_CHECK = (
    "(role = 'merchant_admin' AND merchant_id IS NOT NULL)"
    " OR (role = 'provider_staff' AND merchant_id IS NULL)"
)
NEW_CHECK = (
    "(role IN ('merchant_admin', 'merchant_viewer') AND merchant_id IS NOT NULL)"
    " OR (role = 'provider_staff' AND merchant_id IS NULL)"
)


def _role_type():
    return sa.Enum(*ROLES, name="user_role", native_enum=False, length=32)


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_users_role_matches_merchant"), type_="check")
        batch_op.create_check_constraint("role_matches_merchant", NEW_CHECK)

    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("token_encrypted", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("role", _role_type(), nullable=False, server_default="merchant_admin")
        )
        batch_op.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.alter_column("role", server_default=None)

    op.create_table(
        "password_resets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"],
            name=op.f("fk_password_resets_user_id_users"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_password_resets")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_password_resets_token_hash")),
    )  # fmt: skip
    op.create_index("ix_password_resets_user_id", "password_resets", ["user_id"])

    op.create_table(
        "password_reset_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_password_reset_requests")),
    )

    op.create_table(
        "mail_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("to_addresses", sa.JSON(), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=True),
        sa.Column("html_body", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_outbox")),
    )
    op.create_index("ix_mail_outbox_status_next", "mail_outbox", ["status", "next_attempt_at"])


def downgrade():
    op.drop_index("ix_mail_outbox_status_next", table_name="mail_outbox")
    op.drop_table("mail_outbox")
    op.drop_table("password_reset_requests")
    op.drop_index("ix_password_resets_user_id", table_name="password_resets")
    op.drop_table("password_resets")
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.drop_column("revoked_at")
        batch_op.drop_column("role")
        batch_op.drop_column("token_encrypted")
    op.execute("DELETE FROM users WHERE role = 'merchant_viewer'")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_users_role_matches_merchant"), type_="check")
        batch_op.create_check_constraint("role_matches_merchant", OLD_CHECK)
