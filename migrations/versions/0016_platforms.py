"""platforms: the provider's third-party platforms as data; health alerts per platform

The default platform's row is written from the WECHAT_* variables when the app first reads the
table (its keys are encrypted with the app's keys, which a migration should not handle); this
revision moves what the single-platform database has to it: each health alert becomes the
default platform's.

Revision ID: 0016_platforms
Revises: 0015_relay
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from flask import current_app

revision = "0016_platforms"
down_revision = "0015_relay"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "platforms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("component_appid", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=200), nullable=True),
        sa.Column("logo", sa.LargeBinary(), nullable=True),
        sa.Column("logo_content_type", sa.String(length=32), nullable=True),
        sa.Column("appsecret", sa.Text(), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("encoding_aes_key", sa.Text(), nullable=False),
        sa.Column("previous_encoding_aes_key", sa.Text(), nullable=True),
        sa.Column("offered_set_ids", sa.JSON(), nullable=False),
        sa.Column("required_set_ids", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("release_state", sa.String(length=16), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("test_accounts", sa.JSON(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_platforms")),
        sa.UniqueConstraint("component_appid", name=op.f("uq_platforms_component_appid")),
    )
    with op.batch_alter_table("health_alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("component_appid", sa.String(length=64), nullable=True))
    op.execute(
        sa.text("UPDATE health_alerts SET component_appid = :appid").bindparams(
            appid=current_app.config["WECHAT_COMPONENT_APPID"]
        )
    )
    with op.batch_alter_table("health_alerts", schema=None) as batch_op:
        batch_op.alter_column("component_appid", existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_constraint("uq_health_alerts_kind", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_health_alerts_kind_component_appid"), ["kind", "component_appid"]
        )


def downgrade():
    # Only the default platform's alerts fit the old one-row-per-kind table.
    op.execute(
        sa.text("DELETE FROM health_alerts WHERE component_appid != :appid").bindparams(
            appid=current_app.config["WECHAT_COMPONENT_APPID"]
        )
    )
    with op.batch_alter_table("health_alerts", schema=None) as batch_op:
        batch_op.drop_constraint("uq_health_alerts_kind_component_appid", type_="unique")
        batch_op.create_unique_constraint("uq_health_alerts_kind", ["kind"])
        batch_op.drop_column("component_appid")
    op.drop_table("platforms")
