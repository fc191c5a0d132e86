"""stable ids: SQLite AUTOINCREMENT on tables whose rows are purged and whose ids are referenced

Revision ID: 0007_stable_ids
Revises: 0005_console_indexes
Create Date: 2026-12-01

Without AUTOINCREMENT, SQLite hands the largest deleted rowid out again: after a purge the next
account got the deleted account's id (its audit history, staff URLs, API ids and webhook delivery
ids). The tables are recreated with AUTOINCREMENT (batch mode), which never reuses an id; the
sqlite_sequence starts above every id in use. PostgreSQL identities never reuse ids: no-op there.
"""

from alembic import op

revision = "0007_stable_ids"
down_revision = "0006_custody_disorder"
branch_labels = None
depends_on = None

# Referenced tables first is not needed: foreign keys are off while the tables are recreated.
TABLES = ("authorizers", "grants", "grant_changes", "attention_items", "webhook_deliveries")


def upgrade():
    _recreate(autoincrement=True)


def downgrade():
    _recreate(autoincrement=False)


def _recreate(*, autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    context = op.get_context()
    # Dropping the old `authorizers` with foreign keys on would cascade-delete every grant and
    # token. SQLite ignores this pragma inside a transaction, hence the autocommit blocks.
    with context.autocommit_block():
        op.execute("PRAGMA foreign_keys=OFF")
    try:
        for table in TABLES:
            with op.batch_alter_table(
                table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
            ):
                pass
        if autoincrement:
            _retire_purged_authorizer_ids()
        problems = op.get_bind().exec_driver_sql("PRAGMA foreign_key_check").all()
        if problems:
            raise RuntimeError(f"foreign keys broken by the table rebuild: {problems[:5]}")
    finally:
        with context.autocommit_block():
            op.execute("PRAGMA foreign_keys=ON")


def _retire_purged_authorizer_ids() -> None:
    """Accounts purged before this revision left audit tombstones naming their ids: the sequence
    starts above those too, so not even an id deleted before the upgrade comes back."""
    bind = op.get_bind()
    highest = bind.exec_driver_sql(
        "SELECT max(CAST(target_id AS INTEGER)) FROM audit_entries "
        "WHERE target_type = 'authorizer' AND action = 'authorizer.purged'"
    ).scalar()
    if highest is None:
        return
    current = bind.exec_driver_sql(
        "SELECT seq FROM sqlite_sequence WHERE name = 'authorizers'"
    ).scalar()
    if current is None:
        bind.exec_driver_sql(
            "INSERT INTO sqlite_sequence (name, seq) VALUES ('authorizers', ?)", (highest,)
        )
    elif current < highest:
        bind.exec_driver_sql(
            "UPDATE sqlite_sequence SET seq = ? WHERE name = 'authorizers'", (highest,)
        )
