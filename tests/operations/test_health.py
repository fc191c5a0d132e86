"""/readyz for load balancers and `flask health` for monitoring plugins (exit 0/1/2, --json)."""

import json

from flask_migrate import upgrade
from sqlalchemy import text

from app import create_app
from app.extensions import db
from app.services.platform import health
from app.services.platform.credentials import component_access_token


def test_readyz_is_503_until_the_database_is_migrated_to_head(app, client):
    response = client.get("/readyz")  # tables from create_all, but no migration ran
    assert response.status_code == 503
    assert response.json["status"] == "not_ready" and response.json["migrations"]["current"] == []
    db.drop_all()
    db.session.commit()
    try:
        upgrade()
        response = client.get("/readyz")
        assert response.status_code == 200, response.json
        body = response.json
        assert body["status"] == "ready" and body["migrations"]["ok"] is True
        assert body["migrations"]["current"] == body["migrations"]["head"]
        assert body["ticket"] == {"present": False, "valid": False}
        assert body["component_token"]["present"] is False
        health.raise_alert(health.IP_NOT_WHITELISTED, errcode=61004)
        response = client.get("/readyz")  # reported, never failing on it
        assert response.status_code == 200
        assert response.json["alerts"][0]["kind"] == "ip_not_whitelisted"
        assert response.json["alerts"][0]["severity"] == "critical"
        assert response.json["health"] == "critical"
    finally:
        db.session.rollback()
        db.session.execute(text("DROP TABLE IF EXISTS alembic_version"))
        db.session.commit()


def test_readyz_is_503_when_the_database_is_unreachable(tmp_path):
    app = create_app(
        {"ENV_NAME": "test", "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://u@127.0.0.1:9/x"}
    )
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json == {"status": "not_ready", "database": "unreachable"}


def _health(runner, *args):
    result = runner.invoke(args=["health", *args])
    return result.exit_code, result.output


def test_flask_health_exit_codes_follow_the_monitoring_plugin_convention(
    sandbox, live_portal, runner
):
    code, output = _health(runner)
    assert code == 2 and output.startswith("status: CRITICAL - no verify ticket received yet")
    sandbox.push_ticket()
    sandbox.flush()
    code, output = _health(runner)
    assert code == 1 and "no component access token" in output
    live_portal.call(component_access_token)
    code, output = _health(runner)
    assert (code, output.splitlines()[0]) == (0, "status: OK")
    health.raise_alert(health.INBOX_FAILURES, last_event_id=1)
    assert _health(runner)[0] == 1
    health.raise_alert(health.IP_NOT_WHITELISTED, errcode=61004)
    code, output = _health(runner)
    assert code == 2 and "alert ip_not_whitelisted" in output.splitlines()[0]
    health.resolve_alert(health.IP_NOT_WHITELISTED)
    health.resolve_alert(health.INBOX_FAILURES)
    assert _health(runner)[0] == 0


def test_flask_health_json(sandbox, live_portal, runner):
    sandbox.push_ticket()
    sandbox.flush()
    live_portal.call(component_access_token)
    health.raise_alert(health.TICKET_SILENT)
    code, output = _health(runner, "--json")
    report = json.loads(output)
    assert code == 1 and report["exit_code"] == 1 and report["status"] == "warning"
    assert report["ticket"]["valid"] is True and report["component_token"]["valid"] is True
    assert report["alerts"] == [
        {
            "kind": "ticket_push_silent",
            "severity": "warning",
            "title": "Ticket pushes stopped",
            "since": report["alerts"][0]["since"],
            "count": 1,
        }
    ]
    assert report["reasons"] == ["alert ticket_push_silent"]
    assert sandbox.component_secret not in output
