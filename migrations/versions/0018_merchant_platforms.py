"""merchant platforms: which of the provider's platforms a merchant may authorize

NULL (every existing merchant) means every active platform; otherwise a JSON list of component
AppIDs chosen by staff.

Revision ID: 0018_merchant_platforms
Revises: 0017_accounts_per_platform
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0018_merchant_platforms"
down_revision = "0017_accounts_per_platform"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("platform_appids", sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.drop_column("platform_appids")
