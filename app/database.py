"""Database wiring: SQLAlchemy, migrations, SQLite pragmas and the at-rest encryption keys."""

from pathlib import Path

from sqlalchemy import MetaData, Text, event, select, type_coerce, update
from sqlalchemy.engine import Engine
from sqlalchemy.engine.url import make_url

from app import vault
from app.extensions import db, migrate
from app.models import Base, Encrypted

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def init_app(app) -> None:
    """Bind SQLAlchemy and Alembic, and make sure a SQLite file's folder exists."""
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    if url.get_backend_name() == "postgresql" and url.drivername == "postgresql":
        # psycopg 3 is the supported driver; accept plain postgresql:// URLs.
        app.config["SQLALCHEMY_DATABASE_URI"] = url.set(drivername="postgresql+psycopg")
    vault.configure(app.config["GRANTDESK_ENCRYPTION_KEYS"])
    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR))


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record) -> None:
    """WAL lets readers work while one writer commits; SQLite leaves foreign keys off by default."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()


def encrypted_columns(metadata: MetaData = Base.metadata):
    """Every (table, column) stored with the Encrypted type."""
    for table in metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, Encrypted):
                yield table, column


def reencrypt_all(metadata: MetaData = Base.metadata) -> int:
    """Re-encrypt every Encrypted value under the newest key, in one transaction."""
    vault_ = vault.current_vault()
    total = 0
    for table, column in encrypted_columns(metadata):
        (pk,) = table.primary_key.columns
        ciphertext = type_coerce(column, Text)  # the stored token, not the decrypted value
        rows = db.session.execute(select(pk, ciphertext).where(column.is_not(None))).all()
        for row_id, token in rows:
            rotated = type_coerce(vault_.rotate(token), Text)
            db.session.execute(update(table).where(pk == row_id).values({column.name: rotated}))
        total += len(rows)
    db.session.commit()
    return total
