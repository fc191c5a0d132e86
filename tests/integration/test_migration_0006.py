"""Revision 0006_custody_disorder hashes the inbox's dedupe keys, purged ones included."""

import hashlib
import os

from sqlalchemy import create_engine, text

from app import create_app
from app.extensions import db
from app.models.inbox import inbox_dedupe_key


def _urls(tmp_path):
    urls = [f"sqlite:///{tmp_path / 'migrated.sqlite'}"]
    if os.environ.get("TEST_DATABASE_URL"):
        urls.append(os.environ["TEST_DATABASE_URL"])
    return urls


def _insert(key, appid=None):
    db.session.execute(
        text(
            "INSERT INTO inbox_events (info_type, authorizer_appid, create_time, dedupe_key,"
            " fields, raw_xml, received_at, outcome, attempts)"
            " VALUES ('unauthorized', :appid, 1, :key, '{}', '', CURRENT_TIMESTAMP, 'processed', 1)"
        ),
        {"key": key, "appid": appid},
    )


def test_dedupe_keys_are_hashed_and_stuck_copies_dropped(tmp_path):
    from flask_migrate import downgrade, upgrade

    raw = "unauthorized:1700000000:wxabc"
    copy = "unauthorized:1700000001:wxdef"  # its original was purged, the copy got stuck
    purged = "purged:" + hashlib.sha256(copy.encode()).hexdigest()
    for url in _urls(tmp_path):
        app = create_app({"ENV_NAME": "test", "SQLALCHEMY_DATABASE_URI": url})
        with app.app_context():
            db.drop_all()
            db.session.execute(text("DROP TABLE IF EXISTS alembic_version"))
            db.session.commit()
            upgrade(revision="0005_console_indexes")
            _insert(raw, "wxabc")
            _insert(copy, "wxdef")
            _insert(purged)
            db.session.commit()
            upgrade(revision="0006_custody_disorder")
            rows = db.session.execute(
                text("SELECT dedupe_key, authorizer_appid FROM inbox_events ORDER BY id")
            ).all()
            assert rows == [(inbox_dedupe_key(raw), "wxabc"), (inbox_dedupe_key(copy), None)]
            db.session.commit()
            downgrade(revision="base")
            db.engine.dispose()
        create_engine(url).dispose()
