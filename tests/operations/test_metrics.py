"""GET /metrics: bearer token, every family by name, database gauges, multiprocess gunicorn."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from app import metrics
from app.extensions import db
from app.services.platform import credentials, health
from app.services.platform.credentials import component_access_token
from tests.intake.conftest import sealed, ticket_xml

TOKEN = "scrape-token-for-tests"
FAMILIES = {
    "grantdesk_pushes": "counter",
    "grantdesk_pushes_rejected": "counter",
    "grantdesk_ticket_age_seconds": "gauge",
    "grantdesk_component_token_ttl_seconds": "gauge",
    "grantdesk_authorizers": "gauge",
    "grantdesk_alerts_active": "gauge",
    "grantdesk_wechat_api_calls": "counter",
    "grantdesk_wechat_api_seconds": "histogram",
    "grantdesk_job_last_success_timestamp_seconds": "gauge",
    "grantdesk_http_request_seconds": "histogram",
    "grantdesk_relay_messages": "counter",
    "grantdesk_relay_deliveries": "counter",
    "grantdesk_relay_reply_seconds": "histogram",
    "grantdesk_relay_outbox_pending": "gauge",
}
ROOT = Path(__file__).resolve().parents[2]


def parse(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: dict, sample_name: str, **labels) -> float:
    family = sample_name.removesuffix("_total").removesuffix("_count").removesuffix("_bucket")
    for sample in families[family].samples:
        if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return 0.0


def scrape(client) -> dict:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.status_code
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return parse(response.get_data(as_text=True))


@pytest.fixture
def scraping(app, monkeypatch):
    app.config["GRANTDESK_METRICS_TOKEN"] = TOKEN
    monkeypatch.setattr(metrics, "DB_CACHE_SECONDS", 0)


def test_metrics_are_404_without_a_token_and_need_the_bearer(app, client):
    assert client.get("/metrics").status_code == 404
    app.config["GRANTDESK_METRICS_TOKEN"] = TOKEN
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and TOKEN not in wrong.get_data(as_text=True)
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_every_family_is_exported_with_its_name_and_type(
    sandbox, live_portal, client, scraping, runner
):
    before = scrape(client)
    sandbox.push_ticket()
    sandbox.flush()
    body, query = sealed(ticket_xml("forged"))
    assert client.post(f"/wechat/events?{query}x", data=body).status_code == 403
    live_portal.call(component_access_token)
    health.raise_alert(health.IP_NOT_WHITELISTED, errcode=61004)
    runner.invoke(args=["run-job", "inbox_retry"])
    after = scrape(client)
    for name, kind in FAMILIES.items():
        assert after[name].type == kind, name
    pushes = {"info_type": "component_verify_ticket", "outcome": "processed"}
    assert value(after, "grantdesk_pushes_total", **pushes) == (
        value(before, "grantdesk_pushes_total", **pushes) + 1
    )
    rejected = {"reason": "events:bad_signature"}
    assert value(after, "grantdesk_pushes_rejected_total", **rejected) == (
        value(before, "grantdesk_pushes_rejected_total", **rejected) + 1
    )
    call = {"api": "api_component_token", "errcode": "0"}
    assert value(after, "grantdesk_wechat_api_calls_total", **call) == (
        value(before, "grantdesk_wechat_api_calls_total", **call) + 1
    )
    assert value(after, "grantdesk_wechat_api_seconds_count", api="api_component_token") >= 1
    assert 0 <= value(after, "grantdesk_ticket_age_seconds") < 60
    assert 7000 < value(after, "grantdesk_component_token_ttl_seconds") <= 7200
    alert = {"kind": "ip_not_whitelisted", "severity": "critical"}
    assert value(after, "grantdesk_alerts_active", **alert) == 1
    assert value(after, "grantdesk_alerts_active", kind="ticket_push_silent") == 0
    assert value(after, "grantdesk_authorizers", status="active") == 0
    last_success = value(after, "grantdesk_job_last_success_timestamp_seconds", job="inbox_retry")
    assert abs(last_success - time.time()) < 60
    http = {"endpoint": "callbacks.events", "method": "POST", "status": "403"}
    assert value(after, "grantdesk_http_request_seconds_count", **http) >= 1


def test_errcodes_are_counted_per_api(sandbox, live_portal, client, scraping):
    sandbox.push_ticket()
    sandbox.flush()
    sandbox.set_faults(endpoints={"api_component_token": {"errcode": 61004, "times": 1}})
    before = scrape(client)
    with pytest.raises(credentials.CredentialsUnavailable):
        live_portal.call(component_access_token)
    after = scrape(client)
    call = {"api": "api_component_token", "errcode": "61004"}
    assert value(after, "grantdesk_wechat_api_calls_total", **call) == (
        value(before, "grantdesk_wechat_api_calls_total", **call) + 1
    )


def test_database_gauges_are_cached_a_few_seconds(app, client, monkeypatch):
    app.config["GRANTDESK_METRICS_TOKEN"] = TOKEN
    monkeypatch.setattr(metrics, "DB_CACHE_SECONDS", 3600)
    metrics._cache.clear()
    first = scrape(client)
    health.raise_alert(health.NO_VALID_TICKET)
    assert value(scrape(client), "grantdesk_alerts_active", kind="no_valid_ticket") == 0
    metrics._cache.clear()
    assert value(scrape(client), "grantdesk_alerts_active", kind="no_valid_ticket") == 1
    assert value(first, "grantdesk_alerts_active", kind="no_valid_ticket") == 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_up(url: str, process) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "gunicorn exited"
        try:
            if requests.get(url + "/healthz", timeout=10).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.1)
    pytest.fail("gunicorn did not come up")


def gunicorn_env(app, tmp_path, **extra) -> dict:
    env = {
        **os.environ,
        "GRANTDESK_CONFIG": "test",
        "TEST_DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "GRANTDESK_METRICS_TOKEN": TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
        **extra,
    }
    (tmp_path / "prom").mkdir(exist_ok=True)
    return env


def test_gunicorn_workers_report_together_in_multiprocess_mode(app, tmp_path):
    db.session.commit()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--workers", "3",
         "--bind", f"127.0.0.1:{port}", "wsgi:app"],
        cwd=ROOT, env=gunicorn_env(app, tmp_path), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_until_up(url, process)
        families = parse(
            requests.get(url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
        )
        before = value(families, "grantdesk_http_request_seconds_count", endpoint="main.healthz")
        for _ in range(30):  # new connections: spread over the workers
            assert requests.get(url + "/healthz", timeout=10).status_code == 200
        for _ in range(6):
            response = requests.get(url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            families = parse(response.text)
            total = value(families, "grantdesk_http_request_seconds_count", endpoint="main.healthz")
            assert total == before + 30  # whichever worker answers, it reports all of them
        for name in FAMILIES:
            assert name in families, name
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
