"""Where `next` may send a browser: property tests of safe_next and the reported defect requests."""

import html
import re
from urllib.parse import unquote, urljoin, urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from werkzeug.utils import redirect

from app.redirects import is_safe_target, safe_next
from tests import factories
from tests.conftest import csrf_token

ORIGIN = "https://portal.example"
NEXT_INPUT = re.compile(r'name="next" type="hidden" value="([^"]*)"|name="next" value="([^"]*)"')

# Pieces attackers combine: slashes both ways, whitespace and controls browsers strip, schemes.
PIECES = [
    "/",
    "//",
    "\\",
    "\t",
    "\n",
    "\r",
    " ",
    "\x00",
    "\x0b",
    "\x0c",
    "\x7f",
    "\x85",
    "\u2028",
    "\u200b",
    "\u202e",
    "%09",
    "%0a",
    "%0d",
    "%2f",
    "%2F",
    "%5c",
    "%252f",
    "%00",
    ".",
    "..",
    ":",
    "@",
    "?",
    "#",
    "https:",
    "javascript:",
    "evil.example",
    "a",
    "settings",
    "\uff0f",
]
targets = st.one_of(
    st.text(),
    st.lists(st.sampled_from(PIECES), max_size=8).map("".join),
    st.tuples(st.sampled_from(PIECES), st.text(max_size=10), st.sampled_from(PIECES)).map("".join),
)


def browser_resolution(location: str, base: str = ORIGIN + "/login") -> str:
    """How a WHATWG browser reads a Location: trims C0+space, drops tab/LF/CR, `\\` is `/`."""
    trimmed = location.strip("".join(chr(c) for c in range(0x21)))
    cleaned = re.sub("[\t\n\r]", "", trimmed).replace("\\", "/")
    return urljoin(base, cleaned)


def stays_on_site(location: str) -> bool:
    for candidate in (location, unquote(location)):
        parts = urlsplit(browser_resolution(candidate))
        if (parts.scheme, parts.netloc) != ("https", "portal.example"):
            return False
    return True


@pytest.fixture(scope="module")
def request_context():
    from app import create_app

    app = create_app({"ENV_NAME": "test"})
    with app.test_request_context("/"):
        yield


@settings(
    max_examples=1500, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(target=targets)
@example("/\t/evil.example/phish")
@example("/\n/evil.example")
@example("/\r/evil.example")
@example("/%09/evil.example")
@example("/%2F/evil.example")
@example("/\\evil.example")
@example("/..//evil.example")
@example("https://evil.example/")
@example("//evil.example")
@example(" //evil.example")
def test_safe_next_never_leaves_the_site_nor_raises(request_context, target):
    location = safe_next(target)
    assert stays_on_site(location), (target, location)
    # Werkzeug must be able to put it in a header (no ValueError for CR/LF).
    response = redirect(location, code=303)
    assert stays_on_site(response.headers["Location"])


@pytest.mark.parametrize("target", [None, 42, b"/settings", "", "x" * 5000])
def test_safe_next_sends_odd_values_home(request_context, target):
    assert safe_next(target) == "/"


@pytest.mark.parametrize(
    "target",
    ["/settings", "/staff/accounts?q=a%20b&page=2", "/merchant/", "/staff/accounts/3#tokens"],
)
def test_safe_next_keeps_ordinary_site_paths(request_context, target):
    assert is_safe_target(target)
    assert safe_next(target) == target


def _hidden_next(page: str) -> str:
    login_form = page[page.index('action="/login"') :]
    match = NEXT_INPUT.search(login_form)
    assert match, "no next field"
    return html.unescape(match.group(1) or match.group(2))


def test_login_with_a_tab_smuggled_next_stays_on_site(client, staff):
    page = client.get("/login?next=%2F%09%2Fevil.example%2Fphish").get_data(as_text=True)
    next_value = _hidden_next(page)
    assert next_value == "/\t/evil.example/phish"
    response = client.post(
        "/login",
        data={
            "email": staff.email,
            "password": factories.PASSWORD,
            "csrf_token": csrf_token(client),
            "next": next_value,
        },
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize(
    "next_value", ["/\t/evil.example/phish", "/\n/evil.example", "/\r/evil.example", "/\r\n"]
)
def test_locale_switch_with_a_hostile_next_goes_home(client, next_value):
    response = client.post(
        "/locale", data={"locale": "en", "next": next_value, "csrf_token": csrf_token(client)}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/"


def test_locale_switch_keeps_a_site_path(client):
    response = client.post(
        "/locale", data={"locale": "en", "next": "/login", "csrf_token": csrf_token(client)}
    )
    assert response.headers["Location"] == "/login"
