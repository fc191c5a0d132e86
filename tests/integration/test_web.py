"""Locale, security headers, error pages, health, the audit log and htmx rendering."""

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEntry
from app.models.audit import AuditLogIsAppendOnly
from app.services import audit
from tests.conftest import csrf_token


def test_locale_follows_accept_language(client):
    zh = client.get("/login", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    en = client.get("/login", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert '<html lang="zh-CN">' in zh.get_data(as_text=True)
    assert '<html lang="en">' in en.get_data(as_text=True)
    assert "Sign in" in en.get_data(as_text=True)


def test_default_locale_is_simplified_chinese(client):
    html = client.get("/login", headers={"Accept-Language": ""}).get_data(as_text=True)
    assert '<html lang="zh-CN">' in html
    assert "<h1>登录</h1>" in html


def test_locale_switch_sticks_for_the_browser(client):
    headers = {"Accept-Language": "en"}
    response = client.post(
        "/locale",
        headers=headers,
        data={"csrf_token": csrf_token(client), "locale": "zh_CN", "next": "/login"},
    )
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert '<html lang="zh-CN">' in client.get("/login", headers=headers).get_data(as_text=True)


def test_signed_in_users_language_is_saved(client, auth, staff):
    auth.login(staff.email)
    client.post(
        "/locale",
        data={"csrf_token": csrf_token(client, "/settings"), "locale": "en", "next": "/settings"},
    )
    db.session.refresh(staff)
    assert staff.locale == "en"


def test_locale_switch_refuses_foreign_redirects(client):
    response = client.post(
        "/locale",
        data={"csrf_token": csrf_token(client), "locale": "en", "next": "//evil.example/x"},
    )
    assert response.headers["Location"] == "/"


def test_security_headers(client):
    headers = client.get("/login").headers
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "unsafe-inline" not in headers["Content-Security-Policy"]
    assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert headers["X-Frame-Options"] == "DENY"
    assert "HX-Request" in headers["Vary"]


def test_pages_contain_no_inline_script(client):
    html = client.get("/login").get_data(as_text=True)
    assert "<script>" not in html and "onclick=" not in html


@pytest.mark.parametrize("code", [404, 405])
def test_error_pages_in_both_languages(client, code):
    method = client.get if code == 404 else client.put
    en = method("/nope" if code == 404 else "/login", headers={"Accept-Language": "en"})
    zh = method("/nope" if code == 404 else "/login", headers={"Accept-Language": "zh-CN"})
    assert en.status_code == zh.status_code == code
    assert f'<p class="error-code">{code}</p>' in en.get_data(as_text=True)
    assert en.get_data(as_text=True) != zh.get_data(as_text=True)


def test_healthz_checks_the_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok"}


def test_audit_entries_cannot_be_changed_or_deleted(app):
    entry = audit.record("test.something", note="x")
    db.session.commit()
    entry.action = "tampered"
    with pytest.raises(AuditLogIsAppendOnly):
        db.session.commit()
    db.session.rollback()
    db.session.delete(db.session.scalar(select(AuditEntry)))
    with pytest.raises(AuditLogIsAppendOnly):
        db.session.commit()
    db.session.rollback()
    assert db.session.scalar(select(AuditEntry)).action == "test.something"


def test_static_htmx_is_vendored(client):
    response = client.get("/static/vendor/htmx/2.0.11/htmx.min.js")
    assert response.status_code == 200
    assert b"htmx" in response.data[:2000]
