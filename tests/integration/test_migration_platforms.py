"""Revisions 0016-0018 move a single-platform database (filled at 0015, the last revision
before several platforms) to the default platform with no loss: its alerts, accounts, sessions,
attention items and inbox events become the default platform's, the WECHAT_* variables make
the platform's row, and the same account can then be authorized to a second platform."""

import json
import os
from datetime import UTC, datetime

from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.exc import IntegrityError

from app import create_app
from app.extensions import db
from app.services.platform import credentials, platforms


def _urls(tmp_path):
    urls = [f"sqlite:///{tmp_path / 'migrated.sqlite'}"]
    if os.environ.get("TEST_DATABASE_URL"):
        urls.append(os.environ["TEST_DATABASE_URL"])
    return urls


def test_a_single_platform_database_becomes_the_default_platforms(tmp_path):
    from flask_migrate import downgrade, upgrade

    for url in _urls(tmp_path):
        app = create_app({"ENV_NAME": "test", "SQLALCHEMY_DATABASE_URI": url})
        appid = app.config["WECHAT_COMPONENT_APPID"]
        with app.app_context():
            db.drop_all()
            db.session.execute(text("DROP TABLE IF EXISTS alembic_version"))
            db.session.commit()
            upgrade(revision="0015_relay")
            db.session.execute(
                text(
                    "INSERT INTO health_alerts (kind, first_seen, last_seen, count, details)"
                    " VALUES ('ticket_push_silent', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 3,"
                    " '{\"last_push_at\": null}')"
                )
            )
            db.session.execute(
                text(
                    "INSERT INTO verify_tickets (component_appid, value, create_time,"
                    " received_at, expires_at, last_push_at, pushes)"
                    " VALUES (:appid, :value, 1, CURRENT_TIMESTAMP,"
                    " CURRENT_TIMESTAMP + INTERVAL '1 hour', CURRENT_TIMESTAMP, 1)"
                    if url.startswith("postgresql")
                    else "INSERT INTO verify_tickets (component_appid, value, create_time,"
                    " received_at, expires_at, last_push_at, pushes)"
                    " VALUES (:appid, :value, 1, CURRENT_TIMESTAMP,"
                    " datetime('now', '+1 hour'), CURRENT_TIMESTAMP, 1)"
                ),
                # The ticket column is encrypted: write it as the app would.
                {"appid": appid, "value": _sealed("ticket@@@kept")},
            )
            ids = _fill_accounts(appid)
            db.session.commit()
            upgrade()
            for table in ("authorizers", "authorization_sessions", "attention_items",
                          "inbox_events"):  # fmt: skip
                rows = db.session.execute(
                    text(f"SELECT id, component_appid FROM {table} ORDER BY id")
                ).all()
                assert rows == [(ids[table], appid)], table
            kept = db.session.execute(
                text("SELECT g.set_ids, t.refresh_token IS NOT NULL FROM grants g"
                     " JOIN authorizer_tokens t ON t.authorizer_id = g.authorizer_id")
            ).one()  # fmt: skip
            assert json.loads(kept[0]) if isinstance(kept[0], str) else kept[0] == [1, 2]
            assert kept[1] is True or kept[1] == 1
            assert db.session.execute(text("SELECT platform_appids FROM merchants")).all() == [
                (None,)
            ]
            if url.startswith("sqlite"):  # the rebuilt tables still never reuse an id (0007)
                for table in ("authorizers", "attention_items", "relay_routes"):
                    sql = db.session.execute(
                        text("SELECT sql FROM sqlite_master WHERE name = :t"), {"t": table}
                    ).scalar()
                    assert "AUTOINCREMENT" in sql, table
            # The same account on a second platform is a second row; twice on one is refused.
            _insert("authorizers", appid="wxaccount000001", component_appid="wxsecond")
            db.session.commit()
            try:
                _insert("authorizers", appid="wxaccount000001", component_appid="wxsecond")
                db.session.commit()
                raise AssertionError("a second row for (platform, appid) was accepted")
            except IntegrityError:
                db.session.rollback()
            alerts = db.session.execute(
                text("SELECT kind, component_appid, count FROM health_alerts")
            ).all()
            assert alerts == [("ticket_push_silent", appid, 3)]
            # On start, the WECHAT_* variables write the default platform's row.
            platforms.sync_default_on_start(app)
            rows = platforms.all_platforms()
            assert [(row.component_appid, row.is_default) for row in rows] == [(appid, True)]
            assert rows[0].token == app.config["WECHAT_TOKEN"]
            with platforms.using(appid):
                assert credentials.current_ticket() == "ticket@@@kept"
            # A second platform's alert of the same kind is its own row.
            db.session.execute(
                text(
                    "INSERT INTO health_alerts (kind, component_appid, first_seen, last_seen,"
                    " count, details) VALUES ('ticket_push_silent', 'wxother', CURRENT_TIMESTAMP,"
                    " CURRENT_TIMESTAMP, 1, '{}')"
                )
            )
            db.session.commit()
            downgrade(revision="0015_relay")
            kept = db.session.execute(text("SELECT kind, count FROM health_alerts")).all()
            assert kept == [("ticket_push_silent", 3)]
            # Only the default platform's accounts fit the one-platform schema.
            held = db.session.execute(text("SELECT appid FROM authorizers")).all()
            assert held == [("wxaccount000001",)]
            db.session.commit()
            downgrade(revision="base")
            db.engine.dispose()
        create_engine(url).dispose()


def _insert(table: str, **values) -> int:
    """A row written as the schema of the moment wants it: the given values, and a plain value
    for every other required column (the models may be ahead of the database's revision)."""
    column_defaults = {"created_at": datetime.now(UTC)}
    reflected = MetaData()
    reflected.reflect(db.engine, only=[table])
    columns = reflected.tables[table].c
    for column in columns:
        if column.name in values or column.nullable or column.primary_key:
            continue
        if column.server_default is not None:
            continue
        kind = column.type.python_type if hasattr(column.type, "python_type") else str
        values[column.name] = column_defaults.get(column.name) or _plain(column.type, kind)
    result = db.session.execute(reflected.tables[table].insert().values(**values))
    return result.inserted_primary_key[0]


def _plain(column_type, kind):
    name = type(column_type).__name__.upper()
    if "JSON" in name:
        return []
    if "DATE" in name or "TIME" in name:
        return datetime.now(UTC)
    if kind is bool or "BOOL" in name:
        return False
    if kind is int:
        return 0
    return "x"


def _fill_accounts(appid: str) -> dict[str, int]:
    """A merchant's account with its grant, tokens, a session, an attention item and its
    authorized push, as 0015 stores them."""
    merchant = _insert("merchants", name="商户")
    account = _insert("authorizers", appid="wxaccount000001", merchant_id=merchant)
    grant = _insert("grants", authorizer_id=account, set_ids=[1, 2], status="active",
                    authorized_at=datetime.now(UTC), updated_at=datetime.now(UTC))  # fmt: skip
    _insert("authorizer_tokens", authorizer_id=account, refresh_token=_sealed("refresh@@@1"),
            consecutive_failures=0)  # fmt: skip
    session = _insert("authorization_sessions", public_id="p1", link_token=_sealed("l1"),
                      link_token_hash="h1", merchant_id=merchant, status="completed",
                      requested_set_ids=[1, 2], expires_at=datetime.now(UTC))  # fmt: skip
    item = _insert("attention_items", kind="needs_reauthorization", dedupe_key="k1",
                   authorizer_appid="wxaccount000001", details={})  # fmt: skip
    event = _insert("inbox_events", info_type="authorized", authorizer_appid="wxaccount000001",
                    create_time=1, dedupe_key="d1", fields={}, raw_xml="",
                    received_at=datetime.now(UTC), outcome="processed", attempts=1)  # fmt: skip
    assert grant
    return {"authorizers": account, "authorization_sessions": session,
            "attention_items": item, "inbox_events": event}  # fmt: skip


def _sealed(value: str) -> str:
    from app.models.base import Encrypted

    return Encrypted().process_bind_param(value, None)
