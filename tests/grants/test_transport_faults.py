"""The portal against WeChat's transport failures (sandbox faults over real HTTP): a 5xx, a reset,
a non-JSON answer or a timeout is a typed transient error that the client retries, and when it
persists the public link page says WeChat is unreachable (503) instead of crashing."""

import pytest

from app.extensions import db
from app.services.platform import credentials, health
from app.services.platform.credentials import CredentialsUnavailable

FAULTS = {
    "http_5xx": {"http_status": 502},
    "reset": {"reset": True},
    "non_json": {"non_json": True},
    "timeout": {"timeout": True},
}


@pytest.fixture
def short_timeout(app):
    """A read timeout the `timeout` fault outlasts at once (the client is rebuilt with it)."""
    app.config["WECHAT_TIMEOUT"] = (2, 0.5)
    app.extensions.pop("grantdesk.wechat", None)


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
def test_a_transient_fault_is_retried_and_the_page_works(flow, short_timeout, fault):
    session = flow.start()
    flow.link(session)  # the component token is in hand
    flow.sandbox.set_faults(endpoints={"api_create_preauthcode": {**fault, "times": 1}})
    assert flow.link(session).pre_auth_code  # one failure, one retry, a working page
    assert flow.calls("api_create_preauthcode") == 3


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
def test_a_persistent_fault_shows_wechat_unreachable(flow, short_timeout, fault):
    session = flow.start()
    flow.sandbox.set_faults(endpoints={"api_create_preauthcode": fault})
    page = flow.portal.http.get(f"{flow.portal.url}/connect/{session['token']}")
    flow.sandbox.set_faults(clear=True)
    assert page.status_code == 503 and 'id="pc-link"' not in page.text
    assert flow.calls("api_create_preauthcode") == 3  # the first try and two retries
    assert flow.link(session).pre_auth_code  # back once WeChat answers


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
def test_a_failing_token_refresh_is_an_alert_not_a_crash(
    sandbox, live_portal, short_timeout, fault
):
    sandbox.push_ticket()
    sandbox.flush()
    sandbox.set_faults(endpoints={"api_component_token": fault})
    with pytest.raises(CredentialsUnavailable):
        live_portal.call(credentials.component_access_token)
    sandbox.set_faults(clear=True)
    alerts = live_portal.call(lambda: {a.kind for a in health.active_alerts()})
    assert health.TOKEN_REFRESH_FAILED in alerts
    assert live_portal.call(credentials.component_access_token)
    db.session.rollback()
