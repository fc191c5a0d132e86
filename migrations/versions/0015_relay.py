"""message relay: routes, messages (encrypted, retained RELAY_RETENTION_HOURS), deliveries

Revision ID: 0015_relay
Revises: 0014_exchange_retry
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_relay"
down_revision = "0014_exchange_retry"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "relay_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("authorizer_id", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=64), nullable=False),
        sa.Column("msg_type", sa.String(length=64), nullable=False),
        sa.Column("create_time", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["authorizer_id"],
            ["authorizers.id"],
            name=op.f("fk_relay_messages_authorizer_id_authorizers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_relay_messages")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_relay_messages_dedupe_key")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("relay_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_relay_messages_authorizer_id"), ["authorizer_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_relay_messages_received_at"), ["received_at"], unique=False
        )

    op.create_table(
        "relay_routes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("token", sa.Text(), nullable=True),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("merchant_id", sa.Integer(), nullable=True),
        sa.Column("authorizer_appid", sa.String(length=64), nullable=True),
        sa.Column("msg_types", sa.JSON(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_relay_routes_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_relay_routes_merchant_id_merchants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_relay_routes")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("relay_routes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_relay_routes_authorizer_appid"), ["authorizer_appid"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_relay_routes_merchant_id"), ["merchant_id"], unique=False
        )

    op.create_table(
        "relay_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("route_id", sa.Integer(), nullable=False),
        sa.Column("authorizer_id", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("create_time", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.Column("reply", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["authorizer_id"],
            ["authorizers.id"],
            name=op.f("fk_relay_deliveries_authorizer_id_authorizers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["relay_messages.id"],
            name=op.f("fk_relay_deliveries_message_id_relay_messages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["route_id"],
            ["relay_routes.id"],
            name=op.f("fk_relay_deliveries_route_id_relay_routes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_relay_deliveries")),
        sa.UniqueConstraint("message_id", "route_id", name=op.f("uq_relay_deliveries_message_id")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("relay_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_relay_deliveries_authorizer_id"), ["authorizer_id"], unique=False
        )
        batch_op.create_index(
            "ix_relay_deliveries_route_created", ["route_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_relay_deliveries_route_account_order",
            ["route_id", "authorizer_id", "create_time", "message_id"],
            unique=False,
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text("status = 'pending'"),
        )
        batch_op.create_index(
            "ix_relay_deliveries_status_next_attempt_at",
            ["status", "next_attempt_at"],
            unique=False,
        )


def downgrade():
    with op.batch_alter_table("relay_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_relay_deliveries_status_next_attempt_at")
        batch_op.drop_index("ix_relay_deliveries_route_account_order")
        batch_op.drop_index("ix_relay_deliveries_route_created")
        batch_op.drop_index(batch_op.f("ix_relay_deliveries_authorizer_id"))

    op.drop_table("relay_deliveries")
    with op.batch_alter_table("relay_routes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_relay_routes_merchant_id"))
        batch_op.drop_index(batch_op.f("ix_relay_routes_authorizer_appid"))

    op.drop_table("relay_routes")
    with op.batch_alter_table("relay_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_relay_messages_received_at"))
        batch_op.drop_index(batch_op.f("ix_relay_messages_authorizer_id"))

    op.drop_table("relay_messages")
