"""Migration 0007_stable_ids: SQLite tables whose rows are purged get AUTOINCREMENT, with every row
(and every row referencing them) intact; a no-op on PostgreSQL."""

import os
import sqlite3

import pytest
from sqlalchemy import text

from app import create_app
from app.extensions import db

TABLES = ("authorizers", "grants", "grant_changes", "attention_items", "webhook_deliveries")
NOW = "2026-12-01 10:00:00.000000"


def _autoincrement(path) -> dict[str, bool]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE type='table'"
        ).fetchall()
    return {name: "AUTOINCREMENT" in sql for name, sql in rows if name in TABLES}


def _seed(connection):
    """Three accounts with grant, history, token, sets, attention and a webhook; #3 purged."""
    connection.execute(text("INSERT INTO merchants (id, name, created_at) VALUES (1, 'M', :t)"),
                       {"t": NOW})  # fmt: skip
    for n in (1, 2, 3):
        connection.execute(
            text(
                "INSERT INTO authorizers (id, appid, merchant_id, created_at) "
                "VALUES (:n, :appid, 1, :t)"
            ),
            {"n": n, "appid": f"wxmigrated{n:07d}", "t": NOW},
        )
        connection.execute(
            text(
                "INSERT INTO grants (id, authorizer_id, status, set_ids, func_info, authorized_at, "
                "updated_at) VALUES (:n, :n, 'active', '[1]', '[]', :t, :t)"
            ),
            {"n": n, "t": NOW},
        )
        connection.execute(
            text(
                "INSERT INTO grant_changes (id, grant_id, at, kind, set_ids, added, removed, "
                "source) "
                "VALUES (:n, :n, :t, 'authorized', '[1]', '[1]', '[]', 'push')"
            ),
            {"n": n, "t": NOW},
        )
        connection.execute(
            text(
                "INSERT INTO authorizer_tokens (authorizer_id, consecutive_failures) VALUES (:n, 0)"
            ),
            {"n": n},
        )
        connection.execute(
            text("INSERT INTO grant_sets (authorizer_id, set_id) VALUES (:n, 1)"), {"n": n}
        )
        connection.execute(
            text(
                "INSERT INTO attention_items (id, kind, dedupe_key, details, created_at) "
                "VALUES (:n, 'unknown_authorizer', :key, '{}', :t)"
            ),
            {"n": n, "key": f"k{n}", "t": NOW},
        )
        connection.execute(
            text(
                "INSERT INTO webhook_deliveries (id, event, payload, status, attempts, created_at, "
                "next_attempt_at) "
                "VALUES (:n, 'grant.authorized', '{}', 'delivered', 1, :t, :t)"
            ),
            {"n": n, "t": NOW},
        )
    for table in ("webhook_deliveries", "attention_items", "authorizers"):
        connection.execute(text(f"DELETE FROM {table} WHERE id = 3"))  # a purge, and its tombstone:
    connection.execute(
        text(
            "INSERT INTO audit_entries (at, action, actor, target_type, target_id, details) "
            "VALUES (:t, 'authorizer.purged', 'system', 'authorizer', '3', '{}')"
        ),
        {"t": NOW},
    )
    # fmt: skip


def _counts(connection) -> dict[str, int]:
    names = (*TABLES, "authorizer_tokens", "grant_sets")
    return {t: connection.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in names}


def test_sqlite_tables_get_autoincrement_and_keep_every_row(tmp_path):
    from flask_migrate import downgrade, upgrade

    path = tmp_path / "before.sqlite"
    app = create_app({"ENV_NAME": "test", "SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}"})
    with app.app_context():
        upgrade(revision="0005_console_indexes")
        with db.engine.begin() as connection:
            _seed(connection)
            before = _counts(connection)
        assert not any(_autoincrement(path).values())

        upgrade(revision="0007_stable_ids")
        assert all(_autoincrement(path).values()), _autoincrement(path)
        with db.engine.begin() as connection:
            assert _counts(connection) == before  # nothing cascaded away during the rebuild
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA foreign_key_check").all() == []
            # The next rows never take an id that was handed out before, purged or not.
            connection.execute(text("DELETE FROM authorizers WHERE id = 2"))
            connection.execute(text(
                "INSERT INTO authorizers (appid, merchant_id, created_at) VALUES ('wxn', 1, :t)"),
                {"t": NOW})  # fmt: skip
            new_id = connection.execute(
                text("SELECT id FROM authorizers WHERE appid = 'wxn'")
            ).scalar()
            assert new_id == 4  # 3 was purged before the migration: its tombstone retires it
            # grants of the remaining account 1 are still attached (cascade intact afterwards)
            connection.execute(text("DELETE FROM authorizers WHERE id = 1"))
            assert connection.execute(text("SELECT count(*) FROM grants")).scalar() == 0
            connection.execute(text(
                "INSERT INTO authorizers (appid, merchant_id, created_at) VALUES ('wxm', 1, :t)"),
                {"t": NOW})  # fmt: skip
            assert (
                connection.execute(text("SELECT id FROM authorizers WHERE appid = 'wxm'")).scalar()
                == 5
            )

        downgrade(revision="0005_console_indexes")
        assert not any(_autoincrement(path).values())
        db.engine.dispose()


@pytest.mark.skipif(
    not (os.environ.get("TEST_DATABASE_URL") or "").startswith("postgresql"),
    reason="PostgreSQL only",
)
def test_postgresql_is_left_alone(tmp_path):
    from flask_migrate import upgrade

    url = os.environ["TEST_DATABASE_URL"]
    app = create_app({"ENV_NAME": "test", "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        db.drop_all()
        db.session.execute(text("DROP TABLE IF EXISTS alembic_version"))
        db.session.commit()
        upgrade(revision="0005_console_indexes")
        upgrade(revision="0007_stable_ids")
        version = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert version == "0007_stable_ids"
        db.session.remove()
        db.drop_all()
        db.session.execute(text("DROP TABLE IF EXISTS alembic_version"))
        db.session.commit()
        db.engine.dispose()
