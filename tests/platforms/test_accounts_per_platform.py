"""An authorization is (platform, account), over real HTTP against the sandbox: one account
authorized to two platforms is two independent grants, with their own sets, tokens and history;
revoking on one leaves the other untouched; the token API asks which one when it cannot tell."""

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEntry, Authorizer, InboxEvent
from app.services.custody import apikeys, sweep
from app.services.platform import platforms
from tests.grants.conftest import Flow
from tests.grants.test_api import conforms


@pytest.fixture
def both(sandbox, live_portal, two):
    """One merchant's account authorized to platform A (sets 1-3) and to B (sets 1, 15)."""
    sandbox.push_ticket()
    sandbox.push_ticket(two["b"])
    sandbox.flush()
    flow = Flow(live_portal, sandbox)
    account = sandbox.account(scenario="fresh", type="official_account")
    for component_appid, sets in ((two["a"], [1, 2, 3]), (two["b"], [1, 15])):
        session = flow.start(sets, component_appid=component_appid)
        link = flow.link(session)
        assert link.component_appid == component_appid
        answer = flow.follow(flow.consent(link, account, sets)["redirect_url"])
        assert answer.status_code == 200, answer.text
    sandbox.flush()
    return {**two, "flow": flow, "appid": account["appid"]}


def _rows(appid: str) -> dict:
    db.session.rollback()
    rows = db.session.scalars(select(Authorizer).where(Authorizer.appid == appid)).all()
    return {
        row.component_appid: {
            "sets": sorted(row.grant.set_ids) if row.grant else None,
            "refresh_token": row.token.refresh_token if row.token else None,
            "access_token": row.token.access_token if row.token else None,
            "changes": [c.kind for c in row.grant.changes] if row.grant else [],
            "merchant_id": row.merchant_id,
        }
        for row in rows
    }


def test_one_account_on_two_platforms_is_two_grants(both, sandbox):
    held = _rows(both["appid"])
    assert set(held) == {both["a"], both["b"]}
    assert held[both["a"]]["sets"] == [1, 2, 3] and held[both["b"]]["sets"] == [1, 15]
    assert held[both["a"]]["changes"] == held[both["b"]]["changes"] == ["authorized"]
    assert held[both["a"]]["refresh_token"] != held[both["b"]]["refresh_token"]
    assert (
        held[both["a"]]["merchant_id"] == held[both["b"]]["merchant_id"] == both["flow"].merchant.id
    )
    # Each platform's refresh token is its own: WeChat (the sandbox) takes each from its owner.
    for component_appid in (both["a"], both["b"]):
        answer = sandbox.wechat(
            "component/api_authorizer_token",
            {"component_appid": component_appid, "authorizer_appid": both["appid"],
             "authorizer_refresh_token": held[component_appid]["refresh_token"]},
            token=sandbox.component_token(component_appid),
        )  # fmt: skip
        assert answer.get("authorizer_access_token"), answer
    # An update on B changes B's grant only.
    sandbox.update(both["appid"], [1, 2, 15], component_appid=both["b"])
    sandbox.flush()
    held = _rows(both["appid"])
    assert held[both["b"]]["sets"] == [1, 2, 15] and held[both["a"]]["sets"] == [1, 2, 3]
    assert held[both["a"]]["changes"] == ["authorized"]


def test_revoking_on_one_platform_leaves_the_other_untouched(both, sandbox):
    before = _rows(both["appid"])[both["a"]]
    sandbox.revoke(both["appid"], component_appid=both["b"])
    sandbox.flush()
    after = _rows(both["appid"])
    assert set(after) == {both["a"]}  # B's authorization purged
    assert after[both["a"]] == before
    tombstones = db.session.scalars(
        select(AuditEntry.details).where(AuditEntry.action == "authorizer.purged")
    ).all()
    assert [t.get("component_appid") for t in tombstones] == [both["b"]]
    # B's pushes about the account are scrubbed; A's keep their payload.
    events = db.session.execute(
        select(InboxEvent.component_appid, InboxEvent.info_type, InboxEvent.raw_xml)
    ).all()
    for component_appid, info_type, raw_xml in events:
        if info_type in ("authorized", "unauthorized"):
            assert bool(raw_xml) == (component_appid == both["a"]), (component_appid, info_type)
    # Revoking A too leaves nothing.
    sandbox.revoke(both["appid"])
    sandbox.flush()
    assert _rows(both["appid"]) == {}


def test_the_sweep_refreshes_each_platforms_token_with_its_own_platform(both, live_portal):
    def expire_all():
        for row in db.session.scalars(select(Authorizer)):
            row.token.access_expires_at = None
        db.session.commit()

    live_portal.call(expire_all)
    before = _rows(both["appid"])
    summary = live_portal.call(sweep.sweep_job)
    assert summary == f"{both['a']}: refreshed=1; {both['b']}: refreshed=1"
    after = _rows(both["appid"])
    for component_appid in (both["a"], both["b"]):
        assert after[component_appid]["access_token"] != before[component_appid]["access_token"]


def test_the_token_api_asks_which_platform_when_the_account_is_on_two(both, client, live_portal):
    key = live_portal.call(
        lambda: apikeys.create_api_key("svc", ["tokens:read", "authorizers:read"])[1]
    )
    headers = {"Authorization": f"Bearer {key}"}
    path, appid = "/authorizers/{appid}/access-token", both["appid"]
    ambiguous = client.get(f"/api/v1/authorizers/{appid}/access-token", headers=headers)
    error = conforms(ambiguous, path)["error"]
    assert ambiguous.status_code == 409 and error["code"] == "ambiguous_platform"
    assert error["component_appids"] == sorted([both["a"], both["b"]])
    assert client.get(f"/api/v1/authorizers/{appid}", headers=headers).status_code == 409
    held = _rows(appid)
    for component_appid in (both["a"], both["b"]):
        url = f"/api/v1/authorizers/{appid}/access-token?component_appid={component_appid}"
        body = conforms(client.get(url, headers=headers), path)
        assert body["component_appid"] == component_appid
        assert body["access_token"] == held[component_appid]["access_token"]
        one = client.get(
            f"/api/v1/authorizers/{appid}?component_appid={component_appid}", headers=headers
        )
        assert conforms(one, "/authorizers/{appid}")["component_appid"] == component_appid
    listed = client.get(f"/api/v1/authorizers?component_appid={both['b']}", headers=headers)
    assert [(i["component_appid"], i["authorizer_appid"]) for i in listed.get_json()["items"]] == [
        (both["b"], appid)
    ]
    # Once B's authorization is gone, the appid alone is unambiguous again.
    both["flow"].sandbox.revoke(appid, component_appid=both["b"])
    both["flow"].sandbox.flush()
    alone = client.get(f"/api/v1/authorizers/{appid}/access-token", headers=headers)
    assert conforms(alone, path)["component_appid"] == both["a"]


def test_the_release_check_passes_for_both_platforms(sandbox, live_portal, two):
    sandbox.push_ticket()
    sandbox.push_ticket(two["b"])
    sandbox.flush()
    for component_appid in (two["a"], two["b"]):
        report = sandbox.release_check(component_appid=component_appid, wait_seconds=5)
        assert report["passed"], report
        assert report["component_appid"] == component_appid
    # The test accounts WeChat authorized for the checks are not merchants' accounts: nothing
    # is held for them on either platform beyond what the checks needed.
    assert live_portal.call(platforms.active_appids) == [two["a"], two["b"]]
