"""A whole connect flow over real HTTP writes no code, ticket or token to any log."""

import logging
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

from sqlalchemy import select

from app.extensions import db
from app.models import Authorizer, AuthorizerToken
from app.services.platform import credentials


def test_a_connect_flow_logs_no_codes_tickets_or_tokens(caplog, flow, sandbox, live_portal):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="werkzeug")
    ticket = sandbox.push_ticket()
    sandbox.flush()
    session = flow.start((1, 2))
    link = flow.link(session)
    account = sandbox.account(scenario="fresh")
    result = flow.consent(link, account, [1, 2])
    auth_code = parse_qs(urlsplit(result["redirect_url"]).query)["auth_code"][0]
    assert flow.follow(result["redirect_url"]).status_code == 200
    sandbox.flush()

    def stored_secrets():
        authorizer = db.session.scalar(
            select(Authorizer).where(Authorizer.appid == account["appid"])
        )
        tokens = db.session.scalar(
            select(AuthorizerToken).where(AuthorizerToken.authorizer_id == authorizer.id)
        )
        return [credentials.component_access_token(), tokens.access_token, tokens.refresh_token]

    secrets = [
        ticket,
        link.pre_auth_code,
        auth_code,
        session["token"],
        *live_portal.call(stored_secrets),
    ]
    assert all(secrets) and len(set(secrets)) == len(secrets)

    lines = [record.getMessage() for record in caplog.records]
    lines += [record.exc_text or "" for record in caplog.records]
    access = [line for line in lines if "/wechat/authorized?" in line]
    assert access and all("auth_code=***" in line for line in access)  # the request was logged
    assert any("component_access_token=***" in line for line in lines)  # calls to WeChat too
    # As written, and as it would appear inside a URL.
    forms = {
        form for secret in secrets for form in (secret, quote(secret, safe=""), quote_plus(secret))
    }
    leaked = {form: line for line in lines + [caplog.text] for form in forms if form in line}
    assert leaked == {}
