"""A pre_auth_code is burned when a WeChat user opens the authorization page with it (WeChat:
"扫码使用过就算已使用"); reuse gets WeChat's refusal, on the pages and on the control API."""

import sqlite3

from app.sandbox import create_app

PHONE = "/wxaopen/safe/bindcomponent"
PC = "/cgi-bin/componentloginpage"
USED = "该二维码已被扫码使用"


def _link(sandbox, code, **extra):
    return {
        "action": "bindcomponent",
        "no_scan": "1",
        "component_appid": sandbox.component_appid,
        "pre_auth_code": code,
        "redirect_uri": "http://127.0.0.1:5000/wechat/authorized?session=s",
        **extra,
    }


def _open(sandbox, path, code, **extra):
    headers = {"Referer": "http://127.0.0.1:5000/connect/x"}
    return sandbox.http.get(f"{sandbox.url}{path}", params=_link(sandbox, code, **extra),
                            headers=headers)  # fmt: skip


def _two_admins(sandbox):
    account = sandbox.account(scenario="fresh", type="official_account")
    other = next(u["id"] for u in sandbox.state()["wechat_users"] if u["id"] != account["admin"])
    return account, other


def _scan_state(sandbox, code):
    return next(c for c in sandbox.state()["credentials"] if c["value"] == code)


def test_opening_the_phone_page_burns_the_code_for_everyone_else(sandbox):
    code = sandbox.pre_auth_code(sandbox.component_token())
    account, other = _two_admins(sandbox)
    # Before a scan, the PC page and the user picker may be opened (and reloaded) freely.
    assert _open(sandbox, PC, code).status_code == 200
    assert _open(sandbox, PC, code).status_code == 200
    assert _open(sandbox, PHONE, code).status_code == 200
    assert _scan_state(sandbox, code)["scanned_by"] is None
    # The scan: a WeChat user opens the page; their phone goes on through the steps.
    scanned = _open(sandbox, PHONE, code, wechat_user=account["admin"])
    assert scanned.status_code == 200 and account["appid"] in scanned.text
    assert _scan_state(sandbox, code)["scanned_by"] == account["admin"]
    assert _open(sandbox, PHONE, code, wechat_user=account["admin"], account=account["appid"]).ok
    # Everyone else, and every fresh opening of the link, gets WeChat's refusal.
    for response in (
        _open(sandbox, PHONE, code, wechat_user=other),
        _open(sandbox, PHONE, code),
        _open(sandbox, PC, code),
    ):
        assert response.status_code == 400 and USED in response.text
    refused = sandbox.consent(code, other, account["appid"], [1], expect=400)
    assert refused["error"] == "pre_auth_code_invalid" and "already scanned" in refused["message"]
    # The scanner can still finish; then the code is spent for them too.
    assert sandbox.consent(code, account["admin"], account["appid"], [1])["auth_code"]
    assert _open(sandbox, PHONE, code, wechat_user=account["admin"]).status_code == 400
    again = sandbox.consent(code, account["admin"], account["appid"], [1], expect=400)
    assert again["error"] == "pre_auth_code_invalid"


def test_consent_through_the_control_api_counts_as_the_scan(sandbox):
    code = sandbox.pre_auth_code(sandbox.component_token())
    account, other = _two_admins(sandbox)
    sandbox.consent(code, account["admin"], account["appid"], [1])
    response = _open(sandbox, PHONE, code, wechat_user=other)
    assert response.status_code == 400 and USED in response.text


def test_unknown_and_expired_codes_keep_their_own_message(sandbox):
    code = sandbox.pre_auth_code(sandbox.component_token())
    unknown = _open(sandbox, PHONE, "preauthcode@@@nope")
    assert unknown.status_code == 400 and USED not in unknown.text
    sandbox.clock(advance_seconds=601)
    expired = _open(sandbox, PHONE, code, lang="en")
    assert expired.status_code == 400 and "invalid, used or expired" in expired.text
    refused = sandbox.consent(code, 1, "wx", [1], expect=400)
    assert refused["message"] == "pre_auth_code is expired"


def test_a_database_from_before_burn_on_scan_gets_the_new_columns(tmp_path):
    path = tmp_path / "old.sqlite"
    config = {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}", "SANDBOX_TICKET_INTERVAL": 0}
    create_app(config)
    with sqlite3.connect(path) as connection:  # as the file was before this change
        connection.execute("ALTER TABLE credential DROP COLUMN scanned_by")
        connection.execute("ALTER TABLE credential DROP COLUMN scanned_at")
    create_app(config)
    with sqlite3.connect(path) as connection:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(credential)")}
    assert {"scanned_by", "scanned_at"} <= columns
