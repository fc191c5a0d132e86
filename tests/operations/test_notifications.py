"""Alert notifications: once on open, reminders, "resolved", retries, no secrets, test button."""

import json
import threading

import pytest
from sqlalchemy import select

from app import create_app
from app.config import InsecureConfigError
from app.extensions import db
from app.models import AlertNotification
from app.services.notify import alerts, webhooks
from app.services.platform import health
from tests.conftest import csrf_token


def messages(robot):
    return [json.loads(r.body)["markdown"]["content"] for r in robot.requests]


def run_job():
    db.session.rollback()
    return alerts.notify_job()


def test_an_opened_alert_is_notified_once_per_channel(app, alert_receivers):
    robot, hook = alert_receivers
    health.raise_alert(health.IP_NOT_WHITELISTED, errcode=61004, client_ip="203.0.113.7")
    run_job()
    run_job()
    health.raise_alert(health.IP_NOT_WHITELISTED, errcode=61004)  # still the same occurrence
    run_job()
    assert len(robot.requests) == 1 and len(hook.requests) == 1
    text = messages(robot)[0]
    assert "[CRITICAL]" in text and "服务器 IP 不在白名单中" in text
    assert "Server IP not in the whitelist" in text and "203.0.113.7" in text
    assert "白名单" in text and "whitelist" in text  # the remedy, in both languages
    assert robot.requests[0].query == {"key": "robot-key"}


def test_the_webhook_is_signed_like_the_grant_webhooks(app, alert_receivers):
    _robot, hook = alert_receivers
    health.raise_alert(health.INBOX_FAILURES, last_event_id=3)
    run_job()
    request = hook.requests[0]
    headers = {k.lower(): v for k, v in request.headers.items()}
    expected = webhooks.sign("alert-webhook-secret", headers["x-grantdesk-timestamp"], request.body)
    assert headers["x-grantdesk-signature"] == expected
    body = json.loads(request.body)
    assert body["event"] == "alert.opened"
    alert = body["alert"]
    assert (alert["kind"], alert["severity"]) == ("inbox_failures", "warning")
    assert alert["title"] == {"zh_CN": "事件处理持续失败", "en": "Events keep failing"}
    assert alert["remedy"]["en"] and alert["remedy"]["zh_CN"]


def test_reminders_at_most_every_interval_then_resolved(app, alert_receivers, portal_clock):
    robot, _hook = alert_receivers
    app.config["GRANTDESK_ALERT_REMIND_MINUTES"] = 30
    health.raise_alert(health.TICKET_REJECTED, errcode=61005)
    run_job()
    portal_clock.advance(29 * 60)
    run_job()
    assert len(robot.requests) == 1  # not yet
    portal_clock.advance(2 * 60)
    run_job()
    run_job()
    assert len(robot.requests) == 2 and "仍未恢复 still open" in messages(robot)[1]
    portal_clock.advance(30 * 60)
    run_job()
    assert len(robot.requests) == 3
    health.resolve_alert(health.TICKET_REJECTED)
    run_job()
    run_job()
    assert len(robot.requests) == 4
    resolved = messages(robot)[3]
    assert "已恢复 resolved" in resolved and 'color="info"' in resolved
    portal_clock.advance(120 * 60)
    run_job()
    assert len(robot.requests) == 4  # nothing while it stays resolved
    health.raise_alert(health.TICKET_REJECTED, errcode=61006)  # a new occurrence
    run_job()
    assert len(robot.requests) == 5 and "告警 opened" in messages(robot)[4]


def test_a_refused_delivery_is_retried_with_backoff(app, alert_receivers, portal_clock):
    robot, hook = alert_receivers
    robot.replies.extend([(502, "bad gateway"), json.dumps({"errcode": 93000, "errmsg": "x"})])
    health.raise_alert(health.FOREIGN_REFRESH, errcode=40001)
    run_job()
    row = db.session.scalar(select(AlertNotification).where(AlertNotification.channel == "wecom"))
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, 502)
    run_job()
    assert len(robot.requests) == 1  # backing off
    portal_clock.advance(31)
    run_job()
    db.session.refresh(row)
    assert (row.status, row.attempts, row.last_error) == ("pending", 2, "robot errcode 93000")
    portal_clock.advance(61)
    run_job()
    db.session.refresh(row)
    assert (row.status, row.attempts) == ("delivered", 3)
    assert len(robot.requests) == 3 and len(hook.requests) == 1


def test_a_notification_never_carries_a_secret(app, alert_receivers):
    robot, hook = alert_receivers
    secret = app.config["WECHAT_COMPONENT_APPSECRET"]
    health.raise_alert(
        health.TOKEN_REFRESH_FAILED,
        error=f"GET /cgi-bin/x?component_access_token=TOKEN123abc failed with {secret}",
        refresh_token="refresh-SECRET-value",
    )
    run_job()
    wire = robot.requests[0].body + hook.requests[0].body
    for value in (secret.encode(), b"TOKEN123abc", b"refresh-SECRET-value"):
        assert value not in wire
    assert b"component_access_token=***" in wire


def test_concurrent_planners_notify_once(app, alert_receivers):
    robot, hook = alert_receivers
    health.raise_alert(health.QUOTA_EXCEEDED, errcode=45009)
    db.session.commit()
    barrier = threading.Barrier(4)

    def planner():
        with app.app_context():
            barrier.wait()
            alerts.notify_job()
            db.session.remove()

    threads = [threading.Thread(target=planner) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(robot.requests) == 1 and len(hook.requests) == 1


def test_the_health_page_lists_notifications_and_sends_a_test(
    app, client, auth, staff, alert_receivers
):
    robot, hook = alert_receivers
    auth.login(staff.email)
    health.raise_alert(health.NO_VALID_TICKET)
    run_job()
    page = client.get("/staff/health").get_data(as_text=True)
    assert 'id="notifications"' in page and "WeCom robot" in page and "No valid ticket" in page
    assert "Critical" in page and "no component token can be obtained" in page  # the remedy
    response = client.post(
        "/staff/health/test-notification", data={"csrf_token": csrf_token(client, "/staff/health")}
    )
    assert response.status_code == 303
    assert len(robot.requests) == 2 and "测试通知" in messages(robot)[1]
    assert json.loads(hook.requests[1].body)["event"] == "alert.test"
    assert client.post("/staff/health/test-notification").status_code == 400  # no CSRF


def test_nothing_is_queued_without_a_channel(app):
    health.raise_alert(health.NO_VALID_TICKET)
    assert run_job() == "queued=0 sent=0"
    assert db.session.scalar(select(AlertNotification.id)) is None


def test_every_alert_kind_has_severity_title_and_remedy():
    from app.services.notify import catalog

    kinds = {v for k, v in vars(health).items() if k.isupper() and isinstance(v, str)}
    kinds -= {"ERRCODE_ALERTS"}
    for kind in kinds:
        entry = catalog.KINDS[kind]
        assert entry.severity in ("critical", "warning")
        assert entry.title_zh and entry.title_en and entry.remedy_zh and entry.remedy_en


def test_the_alert_webhook_needs_a_secret():
    settings = {
        "ENV_NAME": "test",
        "GRANTDESK_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/alerts",
        "GRANTDESK_ALERT_WEBHOOK_SECRET": None,
    }
    with pytest.raises(InsecureConfigError):
        create_app(settings)
    assert create_app({**settings, "GRANTDESK_ALERT_WEBHOOK_SECRET": "s3cret-value"})


def test_the_test_button_without_channels_says_so(app, client, auth, staff):
    auth.login(staff.email)
    token = csrf_token(client, "/staff/health")
    response = client.post(
        "/staff/health/test-notification", data={"csrf_token": token}, follow_redirects=True
    )
    assert "No alert channel is configured." in response.get_data(as_text=True)
    assert alerts.recent() == []
