"""Fixtures for the grant lifecycle: a connected portal and helpers to walk the consent flow."""

import html
import re

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuthorizationSession, Authorizer, GrantChange
from app.services.authorization import sessions
from app.wechat.links import parse_authorization_url
from tests import factories

LINK = re.compile(r'id="pc-link" href="([^"]+)"')


class Flow:
    """Walk the merchant's authorization flow against the sandbox over real HTTP."""

    def __init__(self, portal, sandbox):
        self.portal, self.sandbox = portal, sandbox
        self.merchant = factories.make_merchant()
        self.admin = factories.make_merchant_admin(self.merchant)

    def start(
        self, set_ids=(1, 2), *, merchant=None, biz_appid=None, auth_type=3, component_appid=None
    ) -> dict:
        """Open a session (on the default platform unless `component_appid`); returns its ids
        (link token, public id, db id)."""
        merchant_id = (merchant or self.merchant).id

        def run():
            session = sessions.start_session(
                db.session.get(type(self.merchant), merchant_id), set_ids,
                auth_type=auth_type, biz_appid=biz_appid, component_appid=component_appid,
            )  # fmt: skip
            return {"id": session.id, "token": session.link_token, "public_id": session.public_id}

        return self.portal.call(run)

    def link(self, session: dict):
        """Open our link page; returns the parsed PC authorization link."""
        response = self.portal.http.get(f"{self.portal.url}/connect/{session['token']}")
        assert response.status_code == 200, response.text
        match = LINK.search(response.text)
        assert match, response.text
        return parse_authorization_url(html.unescape(match.group(1)))

    def consent(self, link, account: dict, set_ids, *, expect: int = 200) -> dict:
        """The admin consents on the phone (sandbox control API)."""
        return self.sandbox.consent(
            link.pre_auth_code, account["admin"], account["appid"], set_ids,
            redirect_uri=link.redirect_uri, component_appid=link.component_appid, expect=expect,
        )  # fmt: skip

    def follow(self, redirect_url: str, **kwargs):
        """The browser follows WeChat's redirect back to us."""
        return self.portal.http.get(redirect_url, **kwargs)

    def session(self, session_id: int) -> AuthorizationSession:
        db.session.rollback()
        db.session.expire_all()
        return db.session.get(AuthorizationSession, session_id)

    def authorizer(self, appid: str, component_appid: str | None = None) -> Authorizer | None:
        """The account's authorization to a platform (default: the default platform)."""
        db.session.rollback()
        db.session.expire_all()
        component_appid = component_appid or self.portal.app.config["WECHAT_COMPONENT_APPID"]
        return db.session.scalar(
            select(Authorizer).where(
                Authorizer.component_appid == component_appid, Authorizer.appid == appid
            )
        )

    def count(self, model) -> int:
        db.session.rollback()
        return db.session.scalar(select(func.count()).select_from(model))

    def calls(self, name: str) -> int:
        return self.sandbox.api_calls().get(name, 0)

    def changes(self, appid: str) -> list[GrantChange]:
        authorizer = self.authorizer(appid)
        return list(authorizer.grant.changes) if authorizer and authorizer.grant else []


@pytest.fixture
def flow(app, sandbox, live_portal):
    """A portal holding a component ticket, a merchant with an admin, and the flow helpers."""
    sandbox.push_ticket()
    sandbox.flush()
    return Flow(live_portal, sandbox)
