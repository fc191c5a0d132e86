"""The secret-masking log filter: what it hides and what it leaves alone."""

import logging

import pytest

from app.logging import SECRET_FILTER, mask_secrets


@pytest.mark.parametrize(
    "line, expected",
    [
        (
            '"GET /wechat/authorized?auth_code=queryauthcode@@@x&expires_in=3600 HTTP/1.1" 302',
            '"GET /wechat/authorized?auth_code=***&expires_in=3600 HTTP/1.1" 302',
        ),
        (
            "POST /cgi-bin/x?component_access_token=a.b-c HTTP/1.1",
            "POST /cgi-bin/x?component_access_token=*** HTTP/1.1",
        ),
        (
            "redirect_uri=https%3A%2F%2Fp%2Fcb%3Fcode%3Dsecret1",
            "redirect_uri=https%3A%2F%2Fp%2Fcb%3Fcode%3D***",
        ),
        (
            '{"pre_auth_code": "preauthcode@@@x", "expires_in": 600}',
            '{"pre_auth_code": "***", "expires_in": 600}',
        ),
        ("{'ticket': 'abc'}", "{'ticket': '***'}"),
        (
            "<ComponentVerifyTicket><![CDATA[t@@@1]]></ComponentVerifyTicket>",
            "<ComponentVerifyTicket>***</ComponentVerifyTicket>",
        ),
        ("key=k1 token=t1 code=c1 ticket=t2", "key=*** token=*** code=*** ticket=***"),
        ("GET /invitations/AbCdEfGhIjKlMnOpQrSt_-9 HTTP/1.1", "GET /invitations/*** HTTP/1.1"),
        ("GET /connect/AbCdEfGhIjKlMnOpQrSt_-9 HTTP/1.1", "GET /connect/*** HTTP/1.1"),
        # Not secrets: left as they are.
        (
            "wechat x: errcode=40001 rid=abc appid=wx1234",
            "wechat x: errcode=40001 rid=abc appid=wx1234",
        ),
        ("GET /connect/result/short HTTP/1.1", "GET /connect/result/short HTTP/1.1"),
    ],
)
def test_mask_secrets(line, expected):
    assert mask_secrets(line) == expected


def test_the_filter_masks_arguments_and_tracebacks():
    try:
        raise ValueError("bad auth_code=abc123")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "werkzeug", logging.INFO, __file__, 1, "%s %s", ("x", "token=t0k"), sys.exc_info()
        )
    assert SECRET_FILTER.filter(record) is True
    assert record.getMessage() == "x token=***"
    assert "abc123" not in record.exc_text and "auth_code=***" in record.exc_text


def test_every_record_of_the_process_is_masked(app, caplog):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("some.library.deep.down").debug("GET /x?access_token=%s", "leaky")
    assert caplog.records[-1].getMessage() == "GET /x?access_token=***"
