"""intake and credentials: event inbox, counters, verify ticket, component token, alerts, job runs

Revision ID: 0002_intake_credentials
Revises: 0194099ca2d1
Create Date: 2026-11-22 10:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = "0002_intake_credentials"
down_revision = "0194099ca2d1"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "inbox_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("info_type", sa.String(length=64), nullable=False),
        sa.Column("authorizer_appid", sa.String(length=64), nullable=True),
        sa.Column("create_time", sa.BigInteger(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=160), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("raw_xml", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_events")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_inbox_events_dedupe_key")),
    )
    with op.batch_alter_table("inbox_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inbox_events_info_type"), ["info_type"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_inbox_events_authorizer_appid"), ["authorizer_appid"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_inbox_events_received_at"), ["received_at"], unique=False)
        batch_op.create_index(
            "ix_inbox_events_outcome_next_attempt_at", ["outcome", "next_attempt_at"], unique=False
        )

    op.create_table(
        "daily_counters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("name", sa.String(length=96), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_daily_counters")),
        sa.UniqueConstraint("day", "name", name="uq_daily_counters_day_name"),
    )
    op.create_table(
        "verify_tickets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("component_appid", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("create_time", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_push_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pushes", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verify_tickets")),
        sa.UniqueConstraint("component_appid", name=op.f("uq_verify_tickets_component_appid")),
    )
    op.create_table(
        "component_credentials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("component_appid", sa.String(length=64), nullable=False),
        sa.Column("token", sa.Text(), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("obtained_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refreshes", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_component_credentials")),
        sa.UniqueConstraint(
            "component_appid", name=op.f("uq_component_credentials_component_appid")
        ),
    )
    op.create_table(
        "health_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_alerts")),
        sa.UniqueConstraint("kind", name=op.f("uq_health_alerts_kind")),
    )
    op.create_table(
        "job_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("host", sa.String(length=128), nullable=True),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_runs")),
        sa.UniqueConstraint("name", name=op.f("uq_job_runs_name")),
    )


def downgrade():
    op.drop_table("job_runs")
    op.drop_table("health_alerts")
    op.drop_table("component_credentials")
    op.drop_table("verify_tickets")
    op.drop_table("daily_counters")
    with op.batch_alter_table("inbox_events", schema=None) as batch_op:
        batch_op.drop_index("ix_inbox_events_outcome_next_attempt_at")
        batch_op.drop_index(batch_op.f("ix_inbox_events_received_at"))
        batch_op.drop_index(batch_op.f("ix_inbox_events_authorizer_appid"))
        batch_op.drop_index(batch_op.f("ix_inbox_events_info_type"))
    op.drop_table("inbox_events")
