"""merchant platforms: which of the provider's platforms a merchant may authorize

NULL (every existing merchant) means every active platform; otherwise a JSON list of component
AppIDs chosen by staff.

On SQLite the batch rebuild drops the old `merchants` table: with foreign keys on, that would
delete the relay routes scoped to a merchant (ON DELETE CASCADE) or fail on its accounts, so
foreign keys are off during the rebuild (as in 0007 and 0017).

Revision ID: 0018_merchant_platforms
Revises: 0017_accounts_per_platform
Create Date: 2026-12-07
"""

from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision = "0018_merchant_platforms"
down_revision = "0017_accounts_per_platform"
branch_labels = None
depends_on = None


def upgrade():
    with _foreign_keys_off(), op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("platform_appids", sa.JSON(), nullable=True))


def downgrade():
    with _foreign_keys_off(), op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.drop_column("platform_appids")


@contextmanager
def _foreign_keys_off():
    """SQLite: foreign keys off while the table is rebuilt, checked before they are on again."""
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
