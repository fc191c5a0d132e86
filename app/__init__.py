"""Grantdesk: the self-service authorization portal of a WeChat Open Platform component."""

from flask import Flask

from app import cli, database, errors, i18n, logs, metrics, security, views
from app.config import load_config
from app.logging import install_secret_masking
from app.services.platform import platforms


def create_app(config=None) -> Flask:
    """Build the portal; `config` is a config class, its name, or a dict of overrides."""
    app = Flask(__name__, instance_relative_config=True)
    load_config(app, config)
    install_secret_masking(app.logger)
    database.init_app(app)
    security.init_app(app)
    i18n.init_app(app)
    views.register_blueprints(app)
    errors.register_error_handlers(app)
    metrics.init_app(app)
    logs.init_app(app)
    cli.register_commands(app)
    platforms.sync_default_on_start(app)
    return app
