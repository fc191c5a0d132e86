"""The database layer: encryption at rest with key rotation, UTC datetimes, migrations."""

import os

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, inspect, select, text

from app import create_app, database, vault
from app.extensions import db
from app.models import Encrypted, utcnow
from tests import factories


@pytest.fixture
def secrets_table(app):
    metadata = MetaData()
    table = Table(
        "test_secrets",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("value", Encrypted()),
    )
    metadata.create_all(db.engine)
    yield metadata, table
    db.session.rollback()  # release the test's read locks before dropping (PostgreSQL)
    metadata.drop_all(db.engine)


def _raw(table):
    return db.session.execute(text(f"SELECT value FROM {table.name}")).scalar_one()


def test_encrypted_column_never_stores_plaintext(secrets_table):
    metadata, table = secrets_table
    db.session.execute(table.insert().values(value="authorizer-refresh-token-123"))
    db.session.commit()
    assert "refresh-token" not in _raw(table)
    assert db.session.execute(select(table.c.value)).scalar_one() == "authorizer-refresh-token-123"


def test_rotate_keys_reencrypts_under_the_newest_key(app, secrets_table):
    metadata, table = secrets_table
    old_key = app.config["GRANTDESK_ENCRYPTION_KEYS"][0]
    db.session.execute(table.insert().values(value="component-ticket"))
    db.session.commit()
    before = _raw(table)

    new_key = Fernet.generate_key().decode()
    vault.configure([new_key, old_key])
    try:
        assert database.reencrypt_all(metadata) == 1
        after = _raw(table)
        assert after != before
        assert Fernet(new_key).decrypt(after.encode()) == b"component-ticket"
        vault.configure([new_key])  # the old key can now be retired
        assert db.session.execute(select(table.c.value)).scalar_one() == "component-ticket"
    finally:
        vault.configure([old_key])


def test_datetimes_come_back_as_aware_utc(app):
    merchant = factories.make_merchant(created_at=utcnow())
    db.session.expire_all()
    assert merchant.created_at.utcoffset().total_seconds() == 0


def test_sqlite_runs_in_wal_mode_with_foreign_keys(app):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite-specific")
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def _database_urls(tmp_path):
    urls = [f"sqlite:///{tmp_path / 'migrated.sqlite'}"]
    if os.environ.get("TEST_DATABASE_URL"):
        urls.append(os.environ["TEST_DATABASE_URL"])
    return urls


def test_migrations_build_the_schema_without_drift(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from flask_migrate import downgrade, upgrade

    for url in _database_urls(tmp_path):
        app = create_app({"ENV_NAME": "test", "SQLALCHEMY_DATABASE_URI": url})
        with app.app_context():
            db.drop_all()
            db.session.execute(text("DROP TABLE IF EXISTS alembic_version"))
            db.session.commit()
            upgrade()
            with db.engine.connect() as connection:
                context = MigrationContext.configure(connection, opts={"compare_type": True})
                assert compare_metadata(context, db.metadata) == [], url
                assert "users" in inspect(connection).get_table_names()
            downgrade(revision="base")
            with db.engine.connect() as connection:
                assert inspect(connection).get_table_names() == ["alembic_version"]
            db.engine.dispose()
        create_engine(url).dispose()
