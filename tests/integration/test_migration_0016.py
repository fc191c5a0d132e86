"""Revision 0016_platforms moves a single-platform database to the default platform: its
alerts become the default platform's, and the WECHAT_* variables make the platform's row."""

import os

from sqlalchemy import create_engine, text

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
            db.session.commit()
            upgrade()
            alerts = db.session.execute(
                text("SELECT kind, component_appid, count FROM health_alerts")
            ).all()
            assert alerts == [("ticket_push_silent", appid, 3)]
            # The first read of the platforms writes the default one from WECHAT_*.
            rows = platforms.all_platforms()
            db.session.commit()
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
            db.session.commit()
            downgrade(revision="base")
            db.engine.dispose()
        create_engine(url).dispose()


def _sealed(value: str) -> str:
    from app.models.base import Encrypted

    return Encrypted().process_bind_param(value, None)
