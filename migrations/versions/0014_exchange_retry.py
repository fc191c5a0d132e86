"""exchange retry: a redirect's auth_code kept (encrypted) for the retry job

Revision ID: 0014_exchange_retry
Revises: 0012_experience
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_exchange_retry"
down_revision = "0012_experience"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("authorization_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retry_auth_code", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("retry_code_expires_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade():
    with op.batch_alter_table("authorization_sessions", schema=None) as batch_op:
        batch_op.drop_column("retry_code_expires_at")
        batch_op.drop_column("retry_auth_code")
