"""Email: the alert channel and merchant notices, through the outbox to a real SMTP server."""

from sqlalchemy import select

from app.extensions import db
from app.models import Grant, GrantStatus, Role, User
from app.services.custody import sweep
from app.services.notify import alerts, mail
from app.services.platform import health
from tests import factories
from tests.access.conftest import parts
from tests.conftest import csrf_token
from tests.grants.fleet import seed_portal, seed_sandbox


def test_alert_emails_reach_every_address_with_title_and_remedy(app, smtp_server):
    app.config["GRANTDESK_ALERT_EMAILS"] = ["ops@example.com", "oncall@example.com"]
    secret = app.config["WECHAT_COMPONENT_APPSECRET"]
    health.raise_alert(health.INVALID_APPSECRET, errcode=40125, error=f"secret {secret}")
    alerts.notify_job()
    alerts.notify_job()
    assert mail.deliver_due() == 1
    message = smtp_server.only()
    assert message["Subject"].startswith("[CRITICAL] AppSecret 无效 / Invalid AppSecret")
    assert smtp_server.envelopes[0].rcpt_tos == ["ops@example.com", "oncall@example.com"]
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "WECHAT_COMPONENT_APPSECRET" in text and "40125" in text
    assert secret not in message.as_string()
    health.resolve_alert(health.INVALID_APPSECRET)
    alerts.notify_job()
    mail.deliver_due()
    assert "resolved" in smtp_server.messages[-1]["Subject"]


def test_without_smtp_the_email_channel_records_its_failure(app):
    app.config["GRANTDESK_ALERT_EMAILS"] = ["ops@example.com"]
    health.raise_alert(health.NO_VALID_TICKET)
    alerts.notify_job()
    [row] = alerts.recent()
    assert (row.channel, row.status, row.last_error) == (
        "email",
        "pending",
        "email (SMTP) is not configured",
    )


def _admins(flow):
    opted_out = factories.make_merchant_admin(flow.merchant, email="quiet@example.com")
    opted_out.account_notices = False
    factories.make_user(Role.MERCHANT_VIEWER, merchant=flow.merchant, email="viewer@example.com")
    db.session.commit()


def test_admins_get_a_notice_when_an_account_needs_reauthorization(flow, smtp_server):
    _admins(flow)
    rows = seed_sandbox(flow.sandbox, 1, exchanged=False)
    flow.portal.call(lambda: seed_portal(db.session, rows, flow.merchant.id))
    flow.sandbox.set_faults(rotate_refresh_token=rows[0][0])
    assert flow.portal.call(sweep.sweep_tokens).outcomes == {"needs_reauthorization": 1}
    assert flow.portal.call(sweep.sweep_tokens).outcomes == {}  # no second notice
    assert flow.portal.call(mail.deliver_due) == 1
    message = smtp_server.only()
    assert smtp_server.envelopes[0].rcpt_tos == [flow.admin.email]
    assert message["Subject"].startswith("需要重新授权 / Re-authorization needed")
    grant = db.session.scalar(select(Grant))
    assert grant.status is GrantStatus.NEEDS_REAUTHORIZATION
    text, html = parts(message)
    base = flow.portal.app.config["PUBLIC_BASE_URL"]
    link = f"{base}/merchant/accounts/{grant.authorizer_id}/update"
    assert link in text and link in html and rows[0][0] in text


def test_admins_get_a_notice_when_an_account_is_revoked(flow, smtp_server):
    _admins(flow)
    rows = seed_sandbox(flow.sandbox, 1)
    flow.portal.call(lambda: seed_portal(db.session, rows, flow.merchant.id))
    flow.sandbox.revoke(rows[0][0])
    flow.sandbox.flush()
    assert flow.portal.call(mail.deliver_due) == 1
    message = smtp_server.only()
    assert smtp_server.envelopes[0].rcpt_tos == [flow.admin.email]
    assert message["Subject"] == "账号授权已取消 / An account's authorization was revoked"
    assert rows[0][0] in message.get_body(preferencelist=("plain",)).get_content()
    text, _html = parts(message)
    assert f"{flow.portal.app.config['PUBLIC_BASE_URL']}/merchant/connect" in text


def test_an_admin_opts_out_in_settings(app, client, auth, merchant_admin):
    auth.login(merchant_admin.email)
    page = client.get("/settings").get_data(as_text=True)
    assert 'id="notices"' in page and 'name="notices-account_notices"' in page
    token = csrf_token(client, "/settings")
    response = client.post("/settings/notices", data={"notices-csrf_token": token})
    assert response.status_code == 303
    assert db.session.get(User, merchant_admin.id).account_notices is False
    client.post(
        "/settings/notices",
        data={"notices-csrf_token": token, "notices-account_notices": "y"},
    )
    assert db.session.get(User, merchant_admin.id).account_notices is True
    assert client.post("/settings/notices", data={}).status_code == 400
