"""A pre_auth_code is burned when it is scanned, i.e. when a phone opens WeChat's authorization
page with it (WeChat: "扫码使用过就算已使用"); reuse gets WeChat's refusal, on the pages and on the
control API."""

import sqlite3

import requests

from app.sandbox import create_app

PHONE = "/wxaopen/safe/bindcomponent"
PC = "/cgi-bin/componentloginpage"
USED = "该二维码已被扫码使用"


def _open(sandbox, browser, path, code, **extra):
    params = {
        "action": "bindcomponent",
        "no_scan": "1",
        "component_appid": sandbox.component_appid,
        "pre_auth_code": code,
        "redirect_uri": "http://127.0.0.1:5000/wechat/authorized?session=s",
        **extra,
    }
    headers = {"Referer": "http://127.0.0.1:5000/connect/x"}
    return browser.get(f"{sandbox.url}{path}", params=params, headers=headers, timeout=30)


def _two_admins(sandbox):
    account = sandbox.account(scenario="fresh", type="official_account")
    other = next(u["id"] for u in sandbox.state()["wechat_users"] if u["id"] != account["admin"])
    return account, other


def _credential(sandbox, code):
    return next(c for c in sandbox.state()["credentials"] if c["value"] == code)


def _refused(response) -> bool:
    return response.status_code == 400 and USED in response.text


def test_the_phone_that_scanned_goes_on_every_other_opening_is_refused(sandbox):
    code = sandbox.pre_auth_code(sandbox.component_token())
    account, other = _two_admins(sandbox)
    phone, stranger = requests.Session(), requests.Session()
    # The computer's page shows the QR as often as it is reloaded, until someone scans.
    assert _open(sandbox, stranger, PC, code).status_code == 200
    assert _open(sandbox, stranger, PC, code).status_code == 200
    assert _credential(sandbox, code)["scanned_at"] is None
    # The scan ("continue on this computer" opens the same phone page): the code is burned.
    assert _open(sandbox, phone, PHONE, code).status_code == 200
    assert _credential(sandbox, code)["scanned_at"] is not None
    assert _refused(_open(sandbox, stranger, PHONE, code))
    assert _refused(_open(sandbox, stranger, PC, code))
    assert _refused(_open(sandbox, stranger, PHONE, code, wechat_user=account["admin"]))
    # The scanning phone goes on: the WeChat user signs in, and from then on only that user.
    picked = _open(sandbox, phone, PHONE, code, wechat_user=account["admin"])
    assert picked.status_code == 200 and account["appid"] in picked.text
    assert _credential(sandbox, code)["scanned_by"] == account["admin"]
    assert _open(sandbox, phone, PHONE, code, wechat_user=account["admin"],
                 account=account["appid"]).status_code == 200  # fmt: skip
    assert _refused(_open(sandbox, phone, PHONE, code, wechat_user=other))
    refused = sandbox.consent(code, other, account["appid"], [1], expect=400)
    assert refused["error"] == "pre_auth_code_invalid" and "already scanned" in refused["message"]
    # The control API stands in for the phone that scanned: it may finish; then the code is spent.
    assert sandbox.consent(code, account["admin"], account["appid"], [1])["auth_code"]
    assert _refused(_open(sandbox, phone, PHONE, code, wechat_user=account["admin"]))
    again = sandbox.consent(code, account["admin"], account["appid"], [1], expect=400)
    assert again["error"] == "pre_auth_code_invalid"


def test_consent_through_the_control_api_burns_the_code(sandbox):
    code = sandbox.pre_auth_code(sandbox.component_token())
    account, _ = _two_admins(sandbox)
    sandbox.consent(code, account["admin"], account["appid"], [1])
    assert _refused(_open(sandbox, requests.Session(), PHONE, code))


def test_unknown_and_expired_codes_keep_their_own_message(sandbox):
    code = sandbox.pre_auth_code(sandbox.component_token())
    browser = requests.Session()
    unknown = _open(sandbox, browser, PHONE, "preauthcode@@@nope")
    assert unknown.status_code == 400 and USED not in unknown.text
    sandbox.clock(advance_seconds=601)
    expired = _open(sandbox, browser, PHONE, code, lang="en")
    assert expired.status_code == 400 and "invalid, used or expired" in expired.text
    refused = sandbox.consent(code, 1, "wx", [1], expect=400)
    assert refused["message"] == "pre_auth_code is expired"


def test_a_database_from_before_burn_on_scan_gets_the_new_columns(tmp_path):
    path = tmp_path / "old.sqlite"
    config = {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}", "SANDBOX_TICKET_INTERVAL": 0}
    create_app(config)
    with sqlite3.connect(path) as connection:  # as the file was before this change
        for column in ("scanned_at", "scanner", "scanned_by"):
            connection.execute(f"ALTER TABLE credential DROP COLUMN {column}")
    create_app(config)
    with sqlite3.connect(path) as connection:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(credential)")}
    assert {"scanned_at", "scanner", "scanned_by"} <= columns
