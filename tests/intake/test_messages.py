"""POST /wechat/messages/<appid>: the release check end to end, and nothing kept for others."""

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import InboxEvent, RelayMessage
from app.services.platform import health
from app.wechat.events import build_message_xml
from tests.intake.conftest import sealed


@pytest.mark.parametrize("group", [1, "all"])
def test_the_sandbox_release_check_passes_against_the_portal(sandbox, live_portal, group):
    sandbox.push_ticket()
    sandbox.flush()
    result = sandbox.release_check(group=group)
    assert result["passed"], [c for c in result["checks"] if not c["passed"]]
    checks = {c["check"] for c in result["checks"]}
    assert checks == {"event", "text", "query_auth_code"}


def test_messages_for_other_authorizers_are_only_counted(client):
    inner = build_message_xml("gh_merchant0001", "openid-1", 1_700_000_000, "text", Content="hi")
    body, query = sealed(inner, to_user_name="gh_merchant0001")
    response = client.post(f"/wechat/messages/wxmerchant0001?{query}", data=body)
    assert (response.status_code, response.data) == (200, b"success")
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(InboxEvent)) == 0
    assert health.counters()["messages:other"] == 1


def test_bad_messages_are_refused(client):
    inner = build_message_xml("gh_merchant0001", "openid-1", 1_700_000_000, "text", Content="hi")
    body, query = sealed(inner, to_user_name="gh_merchant0001")
    bad = query.replace("msg_signature=", "msg_signature=f")
    assert client.post(f"/wechat/messages/wx1?{bad}", data=body).status_code == 403
    assert health.counters()["rejected:messages:bad_signature"] == 1


def test_with_no_relay_route_a_users_message_gets_success_and_is_not_stored(sandbox, live_portal):
    sandbox.push_ticket()
    sandbox.flush()
    account = sandbox.authorize(sandbox.component_token())["account"]
    sandbox.flush()
    result = sandbox.user_message(account["appid"], "text", content="在吗？")
    assert (result["attempts"], result["http_status"]) == (1, 200)
    assert (result["reply_xml"], result["error"]) == (None, None)
    (delivery,) = [d for d in sandbox.deliveries() if d["info_type"] == "message:text"]
    assert delivery["attempts"][0]["reply"] == "success"
    event = sandbox.user_message(account["appid"], "event", event="subscribe")
    assert (event["msg_id"], event["attempts"], event["reply_xml"]) == (None, 1, None)
    stored = live_portal.call(
        lambda: db.session.scalar(select(func.count()).select_from(RelayMessage))
    )
    assert stored == 0
