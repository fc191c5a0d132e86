"""Only provider staff reach the console: every staff route, every method."""

import re

import pytest

from tests import factories


def staff_routes(app):
    """(method, url) for every staff endpoint, with ids filled in."""
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("staff."):
            continue
        url = re.sub(r"<any\([^)]*\):action>", "resync", rule.rule)
        url = re.sub(r"<[^>]+>", "1", url)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append((method, url))
    return routes


def test_there_are_many_staff_routes(app):
    assert len(staff_routes(app)) >= 20


def test_anonymous_users_are_sent_to_sign_in(app, client):
    for method, url in staff_routes(app):
        response = client.open(url, method=method)
        # POSTs without a CSRF token are refused before anything else; GETs go to sign-in.
        assert response.status_code in ((302,) if method == "GET" else (302, 400)), (method, url)
        if response.status_code == 302:
            assert "/login" in response.headers["Location"], url


def test_merchant_admins_are_refused_everywhere(app, client, auth):
    admin = factories.make_merchant_admin()
    auth.login(admin.email)
    from tests.conftest import csrf_token

    token = csrf_token(client, "/settings")
    for method, url in staff_routes(app):
        response = client.open(url, method=method, data={"csrf_token": token})
        assert response.status_code == 403, (method, url, response.status_code)


@pytest.mark.parametrize("url", ["/staff/", "/staff/accounts/", "/staff/health", "/staff/audit",
                                 "/staff/api-keys", "/staff/merchants"])  # fmt: skip
def test_staff_reach_every_page(staff_client, url):
    assert staff_client.get(url).status_code == 200


def test_posts_need_a_csrf_token(staff_client):
    factories.make_merchant()
    assert staff_client.post("/staff/api-keys", data={"name": "x"}).status_code == 400
