"""The app itself: defaults, first-start seeding, determinism, CSRF, dashboard, ticket thread."""

import time

from app.sandbox import create_app


def make(tmp_path, **config):
    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'sb.sqlite'}",
            "SANDBOX_TICKET_INTERVAL": 0,
            **config,
        }
    )


def test_first_start_seeds_and_seed_is_deterministic(tmp_path):
    first = make(tmp_path / "a").test_client().get("/sandbox/api/state").json
    (tmp_path / "b").mkdir()
    second = make(tmp_path / "b").test_client().get("/sandbox/api/state").json
    assert [a["appid"] for a in first["accounts"]] == [a["appid"] for a in second["accounts"]]
    assert [u["name"] for u in first["wechat_users"]] == [u["name"] for u in second["wechat_users"]]
    scenarios = {a["scenario"] for a in first["accounts"]}
    assert {"fresh", "exclusive_elsewhere", "provider_limit", "release_test"} <= scenarios
    assert {a["type"] for a in first["accounts"]} == {"official_account", "mini_program"}
    release = [g for g in first["authorizations"] if g["status"] == "active"]
    assert len(release) == 10  # all five groups of release-test accounts
    assert {"wx570bc396a51b8ff8", "wxd101a85aa106f53e"} <= {g["authorizer_appid"] for g in release}


def test_other_seed_other_world(tmp_path):
    app = make(tmp_path)
    client = app.test_client()
    before = [a["appid"] for a in client.get("/sandbox/api/state").json["accounts"]]
    client.post("/sandbox/api/reset", json={"seed": 7})
    after = [a["appid"] for a in client.get("/sandbox/api/state").json["accounts"]]
    assert before != after


def test_dev_defaults_match_the_portal(tmp_path, monkeypatch):
    for name in ("WECHAT_COMPONENT_APPID", "SANDBOX_EVENT_URL", "SANDBOX_INITIATING_DOMAIN"):
        monkeypatch.delenv(name, raising=False)
    app = make(tmp_path)
    assert app.config["WECHAT_COMPONENT_APPID"] == "wx3a1b5c7d9e0f2468"
    assert len(app.config["WECHAT_ENCODING_AES_KEY"]) == 43
    assert app.config["SANDBOX_EVENT_URL"] == "http://127.0.0.1:5000/wechat/events"
    assert app.config["SANDBOX_INITIATING_DOMAIN"] == "127.0.0.1:5000"


def test_env_configures_credentials(tmp_path, monkeypatch):
    monkeypatch.setenv("WECHAT_COMPONENT_APPID", "wx1111111111111111")
    monkeypatch.setenv("SANDBOX_DATABASE_URL", f"sqlite:///{tmp_path / 'env.sqlite'}")
    app = create_app({"SANDBOX_TICKET_INTERVAL": 0})
    assert app.config["SQLALCHEMY_DATABASE_URI"].endswith("env.sqlite")
    state = app.test_client().get("/sandbox/api/state").json
    assert state["platform"]["appid"] == "wx1111111111111111"


def test_page_forms_need_csrf_but_apis_do_not(tmp_path):
    app = make(tmp_path, WTF_CSRF_ENABLED=True)
    client = app.test_client()
    assert (
        client.post(
            "/sandbox/assistant/1/wx2b81d6e1f8962847", data={"action": "revoke"}
        ).status_code
        == 400
    )
    assert client.post("/cgi-bin/component/api_component_token", json={}).status_code == 200
    assert client.post("/sandbox/api/push-ticket").status_code == 200


def test_dashboard_renders(tmp_path):
    client = make(tmp_path).test_client()
    client.post("/sandbox/api/push-ticket")
    page = client.get("/sandbox/")
    assert page.status_code == 200
    assert b"wx570bc396a51b8ff8" in page.data and b"component_verify_ticket" in page.data


def test_english_pages(tmp_path):
    client = make(tmp_path).test_client()
    page = client.get("/sandbox/assistant/1?lang=en")
    assert b"Security assistant" in page.data
    assert "sandbox_lang=en" in page.headers["Set-Cookie"]
    assert b"Security assistant" in client.get("/sandbox/assistant/1").data


def test_ticket_thread_pushes_on_start_and_interval(tmp_path, receiver):
    app = make(tmp_path, SANDBOX_TICKET_INTERVAL=0.3, SANDBOX_EVENT_URL=receiver.event_url)
    try:
        assert len(receiver.wait_for(2, timeout=5)) >= 2
    finally:
        app.extensions["sandbox"].ticket_thread.stop.set()
    time.sleep(0.1)


def test_no_ticket_thread_when_interval_is_zero(tmp_path):
    assert make(tmp_path).extensions["sandbox"].ticket_thread is None


def test_reloader_parent_does_not_push(tmp_path, monkeypatch):
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "true")
    monkeypatch.delenv("WERKZEUG_RUN_MAIN", raising=False)
    app = make(tmp_path, DEBUG=True, SANDBOX_TICKET_INTERVAL=600)
    assert app.extensions["sandbox"].ticket_thread is None
    (tmp_path / "child").mkdir()
    monkeypatch.setenv("WERKZEUG_RUN_MAIN", "true")
    child = make(
        tmp_path / "child",
        DEBUG=True,
        SANDBOX_TICKET_INTERVAL=600,
        SANDBOX_EVENT_URL="http://127.0.0.1:9/x",
    )
    assert child.extensions["sandbox"].ticket_thread is not None
    child.extensions["sandbox"].ticket_thread.stop.set()
