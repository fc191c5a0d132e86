"""Shared fixtures: the app, its client and CLI runner, and an auth helper (like Flask's tutorial).

Set TEST_DATABASE_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) to run the
suite against PostgreSQL; otherwise each test gets a fresh SQLite file.
"""

import contextvars
import os
import re
from pathlib import Path

import pytest
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import has_app_context
from flask.testing import FlaskClient

from app import create_app
from app.extensions import db, limiter
from tests import factories

pytest_plugins = [
    "tests.plugins.browser",
    "tests.plugins.portal",
    "tests.plugins.sandbox",
    "tests.plugins.convergence",
]

CSRF_INPUT = re.compile(
    r'name="csrf_token" type="hidden" value="([^"]+)"|'
    r'name="csrf_token" value="([^"]+)"'
)


def pytest_sessionstart(session):
    """Compile stale translation catalogs, so a plain `pytest` sees what `make test` would."""
    for po in Path(__file__).resolve().parents[1].glob("app/translations/*/LC_MESSAGES/*.po"):
        mo = po.with_suffix(".mo")
        if not mo.exists() or mo.stat().st_mtime < po.stat().st_mtime:
            with po.open("rb") as source, mo.open("wb") as target:
                write_mo(target, read_po(source))


def database_url(tmp_path) -> str:
    return os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{tmp_path / 'grantdesk.sqlite'}"


class IsolatedClient(FlaskClient):
    """Runs each request in fresh contexts, as a real server would.

    The test body keeps an app context open for factories and queries; without this, requests
    would share its `g` (the signed-in user, the CSRF token, the locale) and its DB session.
    """

    def open(self, *args, **kwargs):
        if not has_app_context():  # a redirect followed from inside a request's context
            return super().open(*args, **kwargs)
        db.session.commit()  # make the test's own writes visible to the request
        response = contextvars.Context().run(super().open, *args, **kwargs)
        db.session.expire_all()  # and the request's writes visible to the test
        return response


@pytest.fixture
def app(tmp_path):
    app = create_app({"ENV_NAME": "test", "SQLALCHEMY_DATABASE_URI": database_url(tmp_path)})
    app.test_client_class = IsolatedClient
    with app.app_context():
        db.drop_all()
        db.create_all()
        limiter.reset()
        yield app
        db.session.remove()
        db.drop_all()
        db.engine.dispose()


@pytest.fixture
def client(app):
    client = app.test_client()
    # Assertions read in English; tests of the default (Chinese) send their own header.
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def csrf_token(client, path: str = "/login") -> str:
    """The CSRF token a real browser would find in the form on `path`."""
    html = client.get(path, follow_redirects=True).get_data(as_text=True)
    match = CSRF_INPUT.search(html)
    assert match, f"no CSRF token on {path}"
    return match.group(1) or match.group(2)


class AuthActions:
    def __init__(self, client):
        self._client = client

    def login(self, email: str, password: str = factories.PASSWORD, **extra):
        data = {"email": email, "password": password, "csrf_token": csrf_token(self._client)}
        return self._client.post("/login", data={**data, **extra})

    def logout(self):
        token = csrf_token(self._client, "/settings")
        return self._client.post("/logout", data={"csrf_token": token})


@pytest.fixture
def auth(client):
    return AuthActions(client)


@pytest.fixture
def staff(app):
    return factories.make_staff()


@pytest.fixture
def merchant_admin(app):
    return factories.make_merchant_admin()
