"""The WeChat Open Platform sandbox: a separate WSGI app that behaves like WeChat (issue #4).

Run alone: `flask --app app.sandbox run --port 5001`. It has its own database
(SANDBOX_DATABASE_URL, default instance/sandbox.sqlite under the working directory), created and
seeded on first start. The portal talks to it only over HTTP, by base URL.

Pushes are delivered by a worker thread. Tests wait with `POST /sandbox/api/flush`, or set
SANDBOX_SYNC_PUSHES=True to deliver inline (after the API answer is computed, before it is sent).
"""

import copy
import logging
import os
import re
import sys
import threading

from flask import Flask
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import inspect, select, text

from app.sandbox import api, api_extra, control, media, pages, runtime
from app.sandbox.config import load_config
from app.sandbox.models import Authorization, Platform, db
from app.sandbox.pushes import Pusher

csrf = CSRFProtect()

__all__ = ["create_app", "csrf"]


def create_app(config: dict | None = None) -> Flask:
    """Build the sandbox app; `config` overrides the environment (tests)."""
    app = Flask(__name__)
    app.config.update(load_config())
    app.config.update(config or {})
    _configure_database(app)
    db.init_app(app)
    csrf.init_app(app)
    app.extensions["sandbox"] = runtime.Runtime()
    app.extensions["sandbox"].pusher = Pusher(app)
    # What /sandbox/api/reset restores after tests repointed URLs or changed quotas.
    app.extensions["sandbox_baseline"] = copy.deepcopy(
        {k: v for k, v in app.config.items() if k.startswith("SANDBOX_")}
    )
    _register_blueprints(app)
    _prepare_world(app)
    _redact_secrets_in_logs()
    _start_ticket_thread(app)
    return app


def _configure_database(app: Flask) -> None:
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:///:memory:"):
        os.makedirs(os.path.dirname(uri.removeprefix("sqlite:///")) or ".", exist_ok=True)
    if uri.startswith("sqlite"):
        # Several threads (requests, pusher, ticket loop) share the file; wait instead of failing.
        options = app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
        options.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})


def _register_blueprints(app: Flask) -> None:
    for blueprint in (api.bp, api_extra.bp, control.bp):
        # WeChat's APIs authenticate by token and the control API is for machines: no CSRF.
        csrf.exempt(blueprint)
        app.register_blueprint(blueprint)
    app.register_blueprint(media.bp)
    app.register_blueprint(pages.bp)
    pages.init_app(app)


def _prepare_world(app: Flask) -> None:
    """Create and seed the database on first start; bring an older database file up to date;
    keep the default (first) platform in step with the config."""
    from app.sandbox import world

    with app.app_context():
        db.create_all()
        _add_missing_columns()
        _grants_per_platform()
        for table in db.metadata.sorted_tables:  # indexes added since this file was created
            for index in table.indexes:
                index.create(db.engine, checkfirst=True)
        platform = db.session.execute(
            select(Platform).order_by(Platform.id).limit(1)
        ).scalar_one_or_none()
        if platform is None:
            world.seed_world()
            return
        _belong_to_default_platform(platform.id)
        config = app.config
        platform.appid = config["WECHAT_COMPONENT_APPID"]
        platform.secret = config["WECHAT_COMPONENT_APPSECRET"]
        platform.token = config["WECHAT_TOKEN"]
        platform.encoding_aes_key = config["WECHAT_ENCODING_AES_KEY"]
        platform.event_url = config["SANDBOX_EVENT_URL"]
        platform.message_url = config["SANDBOX_MESSAGE_URL"]
        platform.initiating_domain = config["SANDBOX_INITIATING_DOMAIN"]
        platform.permission_set_ids = world.parse_ids(config["SANDBOX_PERMISSION_SETS"])
        platform.ip_whitelist = list(config["SANDBOX_IP_WHITELIST"])
        platform.quotas = dict(config["SANDBOX_QUOTAS"])
        platform.release_state = platform.release_state or "released"
        platform.test_accounts = platform.test_accounts or []
        db.session.commit()


def _add_missing_columns() -> None:
    """Columns added to the models since this database file was created (all nullable)."""
    inspector = inspect(db.engine)
    with db.engine.begin() as connection:
        for table in db.metadata.sorted_tables:
            present = {column["name"] for column in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in present:
                    kind = column.type.compile(db.engine.dialect)
                    connection.execute(
                        text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}')
                    )


def _grants_per_platform() -> None:
    """A database file from before several platforms has one grant per account (a unique
    account_id); make it one per (platform, account), keeping every row."""
    table = Authorization.__table__
    inspector = inspect(db.engine)
    unique = inspector.get_unique_constraints(table.name)
    legacy = [u for u in unique if u["column_names"] == ["account_id"]]
    if not legacy:
        return
    columns = ", ".join(f'"{c["name"]}"' for c in inspector.get_columns(table.name))
    with db.engine.begin() as connection:
        if db.engine.dialect.name == "sqlite":  # SQLite drops a constraint by rebuilding
            connection.execute(text(f'ALTER TABLE "{table.name}" RENAME TO "authorization_old"'))
            table.create(connection)
            connection.execute(
                text(
                    f'INSERT INTO "{table.name}" ({columns}) '
                    f'SELECT {columns} FROM "authorization_old"'
                )
            )
            connection.execute(text('DROP TABLE "authorization_old"'))
        else:
            for constraint in legacy:
                connection.execute(
                    text(f'ALTER TABLE "{table.name}" DROP CONSTRAINT "{constraint["name"]}"')
                )
            connection.execute(
                text(
                    f'ALTER TABLE "{table.name}" ADD CONSTRAINT "uq_grant_per_platform" '
                    "UNIQUE (platform_id, account_id)"
                )
            )


def _belong_to_default_platform(platform_id: int) -> None:
    """Rows written before several platforms existed belong to the default one."""
    with db.engine.begin() as connection:
        for table in db.metadata.sorted_tables:
            if "platform_id" in table.c:
                connection.execute(
                    table.update()
                    .where(table.c.platform_id.is_(None))
                    .values(platform_id=platform_id)
                )


class _RedactTokens(logging.Filter):
    """Keep tokens and codes out of request logs (werkzeug logs full query strings)."""

    pattern = re.compile(
        r"((?:access_token|component_access_token|auth_code|pre_auth_code)=)"
        r"[^&\s\"]+"
    )

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(
                self.pattern.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args
            )
        if isinstance(record.msg, str):
            record.msg = self.pattern.sub(r"\1***", record.msg)
        return True


def _redact_secrets_in_logs() -> None:
    logger = logging.getLogger("werkzeug")
    if not any(isinstance(f, _RedactTokens) for f in logger.filters):
        logger.addFilter(_RedactTokens())


def _is_reloader_parent(app: Flask) -> bool:
    # `flask run --debug` loads the app in the watching parent *and* in the serving child; only
    # the child (WERKZEUG_RUN_MAIN=true) serves requests, so only it may push tickets.
    from_cli = os.environ.get("FLASK_RUN_FROM_CLI") == "true"
    reloading = app.debug and "--no-reload" not in sys.argv
    return from_cli and reloading and os.environ.get("WERKZEUG_RUN_MAIN") != "true"


def _start_ticket_thread(app: Flask) -> None:
    """Push a ticket to every platform now and every SANDBOX_TICKET_INTERVAL seconds (0 =
    never)."""
    interval = float(app.config["SANDBOX_TICKET_INTERVAL"])
    state = app.extensions["sandbox"]
    if interval <= 0 or state.ticket_thread is not None or _is_reloader_parent(app):
        return
    stop = threading.Event()
    state.ticket_thread = threading.Thread(
        target=_ticket_loop, args=(app, interval, stop), name="sandbox-tickets", daemon=True
    )
    state.ticket_thread.stop = stop
    state.ticket_thread.start()


def _ticket_loop(app: Flask, interval: float, stop: threading.Event) -> None:
    from app.sandbox import grants, platforms, pushes

    while not stop.is_set():
        try:
            with app.app_context():
                with runtime.get(app).lock:
                    for platform in platforms.all_platforms():
                        grants.push_ticket(platform, scheduled=True)
                    db.session.commit()
                pushes.send_outbox()
        except Exception:  # keep pushing even if one round fails
            app.logger.exception("scheduled ticket push failed")
        stop.wait(interval)
