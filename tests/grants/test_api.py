"""The token API: keys, scopes, rate limits, audit, and conformance to its OpenAPI document."""

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEntry, Authorizer, Grant, GrantStatus
from app.services import clock
from app.services.custody import apikeys

SPEC = json.loads((Path(__file__).parents[2] / "app/api/openapi.json").read_text())
ALL = ["authorizers:read", "tokens:read", "component_token:read"]


def _resolve(schema):
    while "$ref" in schema:
        node = SPEC
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def validate(value, schema, path="$"):
    """The subset of JSON Schema the document uses: type(s), enum, required, properties, items."""
    schema = _resolve(schema)
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds] if kinds else []
    checks = {"string": str, "integer": int, "array": list, "object": dict, "null": type(None)}
    checks["boolean"] = bool
    if kinds:
        ok = any(
            isinstance(value, checks[k]) and isinstance(value, bool) == (k == "boolean")
            for k in kinds
        )
        assert ok, f"{path}: {value!r} is not {kinds}"
    if "enum" in schema:
        assert value in schema["enum"], f"{path}: {value!r} not in {schema['enum']}"
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            assert name in value, f"{path}: missing {name}"
        if schema.get("additionalProperties") is False:
            assert set(value) <= set(props), f"{path}: extra {set(value) - set(props)}"
        for name, item in value.items():
            if name in props:
                validate(item, props[name], f"{path}.{name}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            validate(item, schema["items"], f"{path}[{i}]")


def conforms(response, template: str, method: str = "get"):
    """Assert the response's status is documented for the operation and its body matches."""
    operation = SPEC["paths"][template][method]
    documented = operation["responses"].get(str(response.status_code))
    assert documented, f"{template}: status {response.status_code} not documented"
    schema = _resolve(documented)["content"]["application/json"]["schema"]
    validate(response.get_json(), schema)
    return response.get_json()


@pytest.fixture
def connected(flow):
    account = flow.sandbox.account(scenario="fresh", type="official_account")
    session = flow.start([1, 2])
    flow.follow(flow.consent(flow.link(session), account, [1, 2])["redirect_url"])
    return account["appid"]


def _key(scopes=ALL, **kwargs):
    return apikeys.create_api_key("billing-service", scopes, **kwargs)[1]


def _get(client, path, key=None, **headers):
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return client.get(f"/api/v1{path}", headers=headers)


def test_requires_a_valid_key(client, connected):
    for key in (None, "gdk_nope_nope", "garbage"):
        response = _get(client, "/authorizers", key)
        assert response.status_code == 401
        assert conforms(response, "/authorizers")["error"]["code"] == "unauthorized"
    row, secret = apikeys.create_api_key("old", ALL)
    assert _get(client, "/authorizers", secret).status_code == 200
    apikeys.revoke_api_key(row)
    assert _get(client, "/authorizers", secret).status_code == 401
    assert db.session.scalar(
        select(AuditEntry.action).where(AuditEntry.action == "api_key.revoked")
    )
    assert row.key_hash != secret and secret not in json.dumps(row.scopes)


def test_scopes(client, connected):
    key = _key(["authorizers:read"])
    assert _get(client, f"/authorizers/{connected}", key).status_code == 200
    for path, template in (
        (f"/authorizers/{connected}/access-token", "/authorizers/{appid}/access-token"),
        ("/component/access-token", "/component/access-token"),
    ):
        response = _get(client, path, key)
        assert response.status_code == 403
        assert conforms(response, template)["error"]["code"] == "insufficient_scope"
    with pytest.raises(apikeys.InvalidScopes):
        apikeys.create_api_key("x", ["everything"])


def test_rate_limit(client, connected):
    key = _key(rate_limit="3 per minute")
    statuses = [_get(client, "/authorizers", key).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = _get(client, "/authorizers", key)
    assert int(response.headers["Retry-After"]) >= 1
    assert conforms(response, "/authorizers")["error"]["code"] == "rate_limited"
    assert _get(client, "/authorizers", _key()).status_code == 200  # per key


def test_access_token_read_is_served_from_custody_and_audited(client, flow, connected):
    authorizer = db.session.scalar(select(Authorizer))
    held = authorizer.token.access_token
    key = _key()
    response = _get(client, f"/authorizers/{connected}/access-token", key)
    body = conforms(response, "/authorizers/{appid}/access-token")
    assert body["access_token"] == held and 7000 < body["expires_in"] <= 7200
    assert flow.calls("api_authorizer_token") == 0
    entry = db.session.scalar(
        select(AuditEntry).where(AuditEntry.action == "api.authorizer_token_read")
    )
    assert entry.actor == "api_key:billing-service" and entry.target_id == str(authorizer.id)
    assert held not in json.dumps(entry.details)


def test_access_token_near_expiry_is_refreshed_once(client, flow, connected):
    authorizer = db.session.scalar(select(Authorizer))
    old = authorizer.token.access_token
    authorizer.token.access_expires_at = clock.now() + timedelta(seconds=30)
    db.session.commit()
    key = _key()
    first = _get(client, f"/authorizers/{connected}/access-token", key).get_json()
    second = _get(client, f"/authorizers/{connected}/access-token", key).get_json()
    assert first["access_token"] != old and second["access_token"] == first["access_token"]
    assert flow.calls("api_authorizer_token") == 1
    # The refreshed token really works at WeChat (the sandbox).
    result = flow.sandbox.wechat(
        "component/get_authorizer_option",
        {"option_name": "voice_recognize"}, token=first["access_token"], token_name="access_token",
    )  # fmt: skip
    assert result.get("errcode", 0) == 0, result


def test_list_get_and_errors_conform(client, flow, connected):
    key = _key()
    listing = conforms(_get(client, "/authorizers?per_page=1", key), "/authorizers")
    assert listing["total"] == 1 and listing["items"][0]["authorizer_appid"] == connected
    assert listing["items"][0]["permission_set_ids"] == [1, 2]
    assert conforms(_get(client, "/authorizers?status=needs_reauthorization", key),
                    "/authorizers")["total"] == 0  # fmt: skip
    bad = _get(client, "/authorizers?per_page=999", key)
    assert bad.status_code == 400 and conforms(bad, "/authorizers")
    one = conforms(_get(client, f"/authorizers/{connected}", key), "/authorizers/{appid}")
    assert one["status"] == "active" and one["account"]["nick_name"]
    missing = _get(client, "/authorizers/wxnope", key)
    assert missing.status_code == 404
    assert conforms(missing, "/authorizers/{appid}")["error"]["code"] == "authorizer_not_found"
    component = _get(client, "/component/access-token", key)
    assert conforms(component, "/component/access-token")["expires_in"] > 0
    spec = client.get("/api/v1/openapi.json")
    assert spec.status_code == 200 and spec.get_json()["openapi"].startswith("3.1")
    assert re.fullmatch(r"[0-9T:\-.]+Z", one["authorized_at"])


def test_access_token_errors_conform(client, flow, connected):
    key, template = _key(), "/authorizers/{appid}/access-token"
    missing = _get(client, "/authorizers/wxnope/access-token", key)
    assert missing.status_code == 404
    assert conforms(missing, template)["error"]["code"] == "authorizer_not_found"
    grant = db.session.scalar(select(Grant))
    grant.status = GrantStatus.NEEDS_REAUTHORIZATION
    db.session.commit()
    stale = _get(client, f"/authorizers/{connected}/access-token", key)
    assert stale.status_code == 409
    assert conforms(stale, template)["error"]["code"] == "needs_reauthorization"
    assert flow.calls("api_authorizer_token") == 0
    reads = select(AuditEntry).where(AuditEntry.action == "api.authorizer_token_read")
    assert db.session.scalars(reads).all() == []  # refusals hand out nothing, so audit nothing
