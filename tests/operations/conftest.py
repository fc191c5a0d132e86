"""Fixtures for operations tests: a WeCom robot and a webhook receiver on real ports."""

import json

import pytest

from tests.plugins.sandbox import Receiver

ROBOT_OK = json.dumps({"errcode": 0, "errmsg": "ok"})


@pytest.fixture
def robot():
    """An HTTP server answering like a WeCom group robot (records every message)."""
    instance = Receiver()
    instance.default_reply = ROBOT_OK
    yield instance
    instance.close()


@pytest.fixture
def alert_receivers(app, robot, receiver):
    """The app configured to notify the robot and the JSON webhook (receiver)."""
    app.config.update(
        GRANTDESK_ALERT_WECOM_URL=robot.url + "/cgi-bin/webhook/send?key=robot-key",
        GRANTDESK_ALERT_WEBHOOK_URL=receiver.url + "/alerts",
        GRANTDESK_ALERT_WEBHOOK_SECRET="alert-webhook-secret",
        GRANTDESK_ALERT_REMIND_MINUTES=60,
    )
    return robot, receiver


from tests.access.conftest import smtp_server  # noqa: E402, F401  (aiosmtpd, issue #12)
from tests.grants.conftest import flow  # noqa: E402, F401
