"""61004, 45009 and an invalid AppSecret become their own alerts, each with its remedy."""

import json

import pytest

from app.services.notify import alerts
from app.services.platform import credentials, health
from app.services.platform.credentials import CredentialsUnavailable, component_access_token
from app.services.platform.platforms import wechat_client


def _ticket(sandbox):
    sandbox.push_ticket()
    sandbox.flush()


def _active(kind: str) -> dict | None:
    for alert in health.active_alerts():
        if alert.kind == kind:
            return dict(alert.details)
    return None


def _robot_texts(robot):
    return [json.loads(r.body)["markdown"]["content"] for r in robot.requests]


def test_61004_is_the_ip_whitelist_alert_notified_and_resolved(
    sandbox, live_portal, alert_receivers
):
    robot, _hook = alert_receivers
    _ticket(sandbox)
    sandbox.set_faults(endpoints={"api_component_token": {"errcode": 61004}})
    with pytest.raises(CredentialsUnavailable):
        live_portal.call(component_access_token)
    details = live_portal.call(_active, health.IP_NOT_WHITELISTED)
    assert details["errcode"] == 61004 and details["api"] == "api_component_token"
    assert live_portal.call(_active, health.TOKEN_REFRESH_FAILED) is None  # not the generic one
    live_portal.call(alerts.notify_job)
    text = _robot_texts(robot)[0]
    assert "Server IP not in the whitelist" in text and "白名单" in text and "[CRITICAL]" in text
    sandbox.set_faults(clear=True)
    assert live_portal.call(component_access_token)
    assert live_portal.call(_active, health.IP_NOT_WHITELISTED) is None
    live_portal.call(alerts.notify_job)
    assert len(robot.requests) == 2 and "resolved" in _robot_texts(robot)[1]


def test_61004_on_any_component_api_raises_the_same_alert(sandbox, live_portal):
    _ticket(sandbox)
    sandbox.set_faults(endpoints={"api_create_preauthcode": {"errcode": 61004}})

    def create_code():
        client = wechat_client()
        return credentials.call_with_component_token(client.create_preauthcode)

    with pytest.raises(Exception) as raised:
        live_portal.call(create_code)
    assert getattr(raised.value, "errcode", None) == 61004
    assert live_portal.call(_active, health.IP_NOT_WHITELISTED)["api"] == "create_preauthcode"


def test_a_wrong_appsecret_is_its_own_alert(sandbox, live_portal, app):
    _ticket(sandbox)
    app.config["WECHAT_COMPONENT_APPSECRET"] = "not-the-platform-secret"
    app.extensions.pop("grantdesk.wechat", None)
    with pytest.raises(CredentialsUnavailable):
        live_portal.call(component_access_token)
    details = live_portal.call(_active, health.INVALID_APPSECRET)
    assert details["errcode"] == 40125
    assert "not-the-platform-secret" not in json.dumps(details)


def test_quota_alert_says_whether_clear_quota_was_used(sandbox, live_portal, runner):
    _ticket(sandbox)
    sandbox.set_faults(endpoints={"api_component_token": {"errcode": 45009, "times": 1}})
    with pytest.raises(CredentialsUnavailable):
        live_portal.call(component_access_token)
    details = live_portal.call(_active, health.QUOTA_EXCEEDED)
    assert (details["clear_quota_used"], details["clear_quota_this_month"]) == (False, 0)
    result = runner.invoke(args=["clear-quota"])
    assert result.exit_code == 0, result.output
    assert "used 1 of 10" in result.output
    assert sandbox.api_calls()["clear_quota/v2"] == 1
    assert live_portal.call(_active, health.QUOTA_EXCEEDED) is None
    sandbox.set_faults(endpoints={"api_component_token": {"errcode": 45009, "times": 1}})
    with pytest.raises(CredentialsUnavailable):
        live_portal.call(component_access_token)
    details = live_portal.call(_active, health.QUOTA_EXCEEDED)
    assert (details["clear_quota_used"], details["clear_quota_this_month"]) == (True, 1)


def test_61004_during_the_sweep_raises_the_whitelist_alert(sandbox, live_portal):
    from app.extensions import db
    from app.models import Merchant
    from app.services.custody import sweep
    from tests.grants.fleet import seed_portal, seed_sandbox

    _ticket(sandbox)
    live_portal.call(component_access_token)
    rows = seed_sandbox(sandbox, 3)
    merchant = Merchant(name="Sweep Co")
    db.session.add(merchant)
    db.session.commit()
    seed_portal(db.session, rows, merchant.id)
    sandbox.set_faults(endpoints={"api_authorizer_token": {"errcode": 61004}})
    outcomes = live_portal.call(sweep.sweep_tokens).outcomes
    assert sum(outcomes.values()) == 3 and not outcomes.get("refreshed")
    details = live_portal.call(_active, health.IP_NOT_WHITELISTED)
    assert details["api"] == "api_authorizer_token" and details["errcode"] == 61004
