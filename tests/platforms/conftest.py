"""Two third-party platforms in one deployment: the default one (WECHAT_*) and platform B,
added to the portal and to the sandbox, both pushing to the portal's one event URL."""

import pytest

from app.extensions import db
from app.services.platform import platforms

B_KEY = "bcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH"
B_APPID = "wx5b7c9d1e3f5a7b9c"


@pytest.fixture
def two(sandbox, live_portal):
    """Platform B beside the default one: added to the portal (as `flask platform add` does)
    and to the sandbox, where it pushes to the portal's one event URL."""
    keys = {"secret": "platformbsecret0123456789", "token": "platformbtoken", "aes_key": B_KEY}

    def add():
        platforms.add(
            component_appid=B_APPID, appsecret=keys["secret"], token=keys["token"],
            encoding_aes_key=keys["aes_key"], name="Mini Program studio",
        )  # fmt: skip
        db.session.commit()

    live_portal.call(add)
    sandbox.add_platform(
        appid=B_APPID,
        secret=keys["secret"],
        token=keys["token"],
        encoding_aes_key=B_KEY,
        event_url=live_portal.url + "/wechat/events",
        message_url=live_portal.url + f"/wechat/{B_APPID}/messages/$APPID$",
        initiating_domain=live_portal.host,
        permission_set_ids=[1, 2, 3, 4, 15, 17, 18, 19],
    )
    return {"a": sandbox.component_appid, "b": B_APPID}
