"""accounts per platform: an authorization is (platform, account)

Authorizers, authorization sessions, attention items and inbox events name their platform
(existing rows: the default platform's); an authorizer's appid is unique per platform, not
globally; relay routes can be scoped to one platform.

Revision ID: 0017_accounts_per_platform
Revises: 0016_platforms
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from flask import current_app

revision = "0017_accounts_per_platform"
down_revision = "0016_platforms"
branch_labels = None
depends_on = None

PLATFORM_OWNED = ("authorizers", "authorization_sessions", "attention_items", "inbox_events")


def upgrade():
    default = current_app.config["WECHAT_COMPONENT_APPID"]
    for table in PLATFORM_OWNED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("component_appid", sa.String(length=64), nullable=True))
        op.execute(sa.text(f"UPDATE {table} SET component_appid = :appid").bindparams(appid=default))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                "component_appid", existing_type=sa.String(length=64), nullable=False
            )
    with op.batch_alter_table("authorizers", schema=None) as batch_op:
        batch_op.drop_constraint("uq_authorizers_appid", type_="unique")
        batch_op.create_index(batch_op.f("ix_authorizers_appid"), ["appid"], unique=False)
        batch_op.create_unique_constraint(
            "uq_authorizers_component_appid_appid", ["component_appid", "appid"]
        )
    with op.batch_alter_table("relay_routes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("component_appid", sa.String(length=64), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_relay_routes_component_appid"), ["component_appid"], unique=False
        )


def downgrade():
    # Only the default platform's accounts fit the one-platform schema.
    default = current_app.config["WECHAT_COMPONENT_APPID"]
    op.execute(
        sa.text("DELETE FROM authorizers WHERE component_appid != :appid").bindparams(
            appid=default
        )
    )
    with op.batch_alter_table("relay_routes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_relay_routes_component_appid"))
        batch_op.drop_column("component_appid")
    with op.batch_alter_table("authorizers", schema=None) as batch_op:
        batch_op.drop_constraint("uq_authorizers_component_appid_appid", type_="unique")
        batch_op.drop_index(batch_op.f("ix_authorizers_appid"))
        batch_op.create_unique_constraint("uq_authorizers_appid", ["appid"])
    for table in reversed(PLATFORM_OWNED):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("component_appid")
