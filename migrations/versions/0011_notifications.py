"""operations: alert notifications (delivery log), job last success, merchant notice opt-out

Revision ID: 0011_notifications
Revises: 0010_teams_mail
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_notifications"
down_revision = "0009_staff_mfa_roles"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "alert_notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
    )
    op.create_index("ix_alert_notifications_kind", "alert_notifications", ["kind"])
    op.create_index("ix_alert_notifications_status", "alert_notifications", ["status"])
    op.create_index("ix_alert_notifications_created_at", "alert_notifications", ["created_at"])
    with op.batch_alter_table("job_runs") as batch:
        batch.add_column(sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("account_notices", sa.Boolean(), server_default=sa.true(), nullable=False)
        )


def downgrade():
    with op.batch_alter_table("users") as batch:
        batch.drop_column("account_notices")
    with op.batch_alter_table("job_runs") as batch:
        batch.drop_column("last_success_at")
    op.drop_index("ix_alert_notifications_created_at", table_name="alert_notifications")
    op.drop_index("ix_alert_notifications_status", table_name="alert_notifications")
    op.drop_index("ix_alert_notifications_kind", table_name="alert_notifications")
    op.drop_table("alert_notifications")
