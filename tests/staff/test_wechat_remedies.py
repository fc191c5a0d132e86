"""The remedy staff see when WeChat refuses our calls because our IP is not whitelisted (61004)."""

import pytest

from app.extensions import db
from app.services.platform import credentials, health
from app.services.platform.credentials import CredentialsUnavailable
from tests.staff.conftest import make_account


def _active_alert(kind):
    return next((a.details for a in health.active_alerts() if a.kind == kind), None)


def test_staff_see_the_remedy_when_the_token_refresh_is_refused(sandbox, live_portal, staff_client):
    sandbox.push_ticket()
    sandbox.flush()
    sandbox.configure(ip_whitelist=["10.20.30.40"])
    with pytest.raises(CredentialsUnavailable):
        live_portal.call(credentials.component_access_token)
    details = live_portal.call(_active_alert, health.IP_NOT_WHITELISTED)
    assert details["errcode"] == 61004 and details["client_ip"] == "127.0.0.1"

    page = staff_client.get("/staff/health").get_data(as_text=True)
    assert "outbound IP is not in the platform" in page
    assert "client_ip=127.0.0.1" in page

    sandbox.configure(ip_whitelist=["127.0.0.1"])
    assert live_portal.call(credentials.component_access_token)
    assert live_portal.call(_active_alert, health.IP_NOT_WHITELISTED) is None
    page = staff_client.get("/staff/health").get_data(as_text=True)
    assert "outbound IP is not in the platform" not in page


def test_the_account_page_shows_the_remedy_for_a_refresh_refused_by_the_whitelist(
    staff_client, app
):
    authorizer = make_account()
    authorizer.token.consecutive_failures, authorizer.token.last_error_code = 3, 61004
    db.session.commit()
    page = staff_client.get(f"/staff/accounts/{authorizer.id}").get_data(as_text=True)
    assert 'data-errcode="61004"' in page
    authorizer.token.last_error_code = -1
    db.session.commit()
    page = staff_client.get(f"/staff/accounts/{authorizer.id}").get_data(as_text=True)
    assert "data-errcode=" not in page
