"""accounts per platform: an authorization is (platform, account)

Authorizers, authorization sessions, attention items and inbox events name their platform
(existing rows: the default platform's); an authorizer's appid is unique per platform, not
globally; relay routes can be scoped to one platform.

On SQLite, batch mode rebuilds each table (copy, drop, rename). Dropping the old `authorizers`
with foreign keys on would cascade-delete every grant, token and relayed message, so foreign
keys are off during the rebuilds (as in 0007), and the tables that never reuse ids keep
AUTOINCREMENT.

Revision ID: 0017_accounts_per_platform
Revises: 0016_platforms
Create Date: 2026-12-07
"""

from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op
from flask import current_app

revision = "0017_accounts_per_platform"
down_revision = "0016_platforms"
branch_labels = None
depends_on = None

PLATFORM_OWNED = ("authorizers", "authorization_sessions", "attention_items", "inbox_events")
# SQLite AUTOINCREMENT (ids never reused, see 0007): a rebuild must keep it.
NEVER_REUSE_IDS = {"authorizers", "attention_items", "relay_routes"}


def upgrade():
    default = current_app.config["WECHAT_COMPONENT_APPID"]
    with _foreign_keys_off():
        for table in PLATFORM_OWNED:
            with _batch(table) as batch_op:
                batch_op.add_column(
                    sa.Column("component_appid", sa.String(length=64), nullable=True)
                )
            op.execute(
                sa.text(f"UPDATE {table} SET component_appid = :appid").bindparams(appid=default)
            )
            with _batch(table) as batch_op:
                batch_op.alter_column(
                    "component_appid", existing_type=sa.String(length=64), nullable=False
                )
        with _batch("authorizers") as batch_op:
            batch_op.drop_constraint("uq_authorizers_appid", type_="unique")
            batch_op.create_index(batch_op.f("ix_authorizers_appid"), ["appid"], unique=False)
            batch_op.create_unique_constraint(
                "uq_authorizers_component_appid_appid", ["component_appid", "appid"]
            )
        with _batch("relay_routes") as batch_op:
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
    with _foreign_keys_off():
        with _batch("relay_routes") as batch_op:
            batch_op.drop_index(batch_op.f("ix_relay_routes_component_appid"))
            batch_op.drop_column("component_appid")
        with _batch("authorizers") as batch_op:
            batch_op.drop_constraint("uq_authorizers_component_appid_appid", type_="unique")
            batch_op.drop_index(batch_op.f("ix_authorizers_appid"))
            batch_op.create_unique_constraint("uq_authorizers_appid", ["appid"])
        for table in reversed(PLATFORM_OWNED):
            with _batch(table) as batch_op:
                batch_op.drop_column("component_appid")


def _batch(table: str):
    kwargs = {"sqlite_autoincrement": True} if table in NEVER_REUSE_IDS else {}
    return op.batch_alter_table(table, schema=None, table_kwargs=kwargs)


@contextmanager
def _foreign_keys_off():
    """SQLite: foreign keys off while tables are rebuilt (the pragma is ignored inside a
    transaction, hence the autocommit blocks), checked before they are on again."""
    if op.get_bind().dialect.name != "sqlite":
        yield
        return
    context = op.get_context()
    with context.autocommit_block():
        op.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
        problems = op.get_bind().exec_driver_sql("PRAGMA foreign_key_check").all()
        if problems:
            raise RuntimeError(f"foreign keys broken by the table rebuild: {problems[:5]}")
    finally:
        with context.autocommit_block():
            op.execute("PRAGMA foreign_keys=ON")
