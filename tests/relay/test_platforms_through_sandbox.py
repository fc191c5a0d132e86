"""The whole chain for a second platform over real HTTP: the sandbox plays WeChat for platform B
(its own keys, its own message URL /wechat/<B>/messages/$APPID$), an account authorizes both
platforms, and each platform's user message is answered by that platform's reply route."""

import xmltodict

from app.extensions import db
from app.models import Authorizer, RelayDelivery
from app.services.platform import platforms
from app.services.relay import routes
from tests.relay.conftest import wechatpy_text_handler

B = "wx5b7c9d1e3f5a7b9c"
B_KEY = "bcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH"
B_SECRET = "platformbsecret0123456789"
B_TOKEN = "platformbtoken"
TOKEN = "sandboxrelayb2024"


def test_a_sandbox_account_on_both_platforms_is_answered_per_platform(
    sandbox, live_portal, services
):
    def add():
        platforms.add(component_appid=B, appsecret=B_SECRET, token=B_TOKEN,
                      encoding_aes_key=B_KEY, name="Mini Program studio")  # fmt: skip
        db.session.commit()

    live_portal.call(add)
    sandbox.add_platform(
        appid=B, secret=B_SECRET, token=B_TOKEN, encoding_aes_key=B_KEY,
        event_url=live_portal.url + "/wechat/events",
        message_url=live_portal.url + f"/wechat/{B}/messages/$APPID$",
        initiating_domain=live_portal.host, permission_set_ids=[1, 2, 3, 4, 15, 17, 18, 19],
    )  # fmt: skip
    a = sandbox.component_appid
    behave_a, _ = wechatpy_text_handler(TOKEN, answer=lambda m: (200, _reply(m, "A")))
    behave_b, _ = wechatpy_text_handler(TOKEN, answer=lambda m: (200, _reply(m, "B")))
    service_a, service_b = services(behave_a), services(behave_b)
    live_portal.call(routes.create_route, name="A", url=service_a.url, format="wechat-xml",
                     mode="reply", token=TOKEN, component_appid=a)  # fmt: skip
    live_portal.call(routes.create_route, name="B", url=service_b.url, format="wechat-xml",
                     mode="reply", token=TOKEN, component_appid=B)  # fmt: skip

    account = sandbox.authorize(sandbox.component_token())["account"]
    sandbox.authorize(sandbox.component_token(B), component_appid=B)
    sandbox.flush()
    # Each platform's `authorized` push made the portal hold the account on that platform.
    held = live_portal.call(
        lambda: sorted(db.session.scalars(
            db.select(Authorizer.component_appid).where(Authorizer.appid == account["appid"])
        ))
    )  # fmt: skip
    assert held == sorted([a, B])

    on_a = sandbox.user_message(account["appid"], "text", content="hi")
    on_b = sandbox.user_message(account["appid"], "text", content="hi", component_appid=B)

    assert xmltodict.parse(on_a["reply_xml"])["xml"]["Content"] == "A: hi"
    assert xmltodict.parse(on_b["reply_xml"])["xml"]["Content"] == "B: hi"
    assert (service_a.calls(), service_b.calls()) == (1, 1)
    statuses = live_portal.call(lambda: [d.status for d in db.session.scalars(
        db.select(RelayDelivery))])  # fmt: skip
    assert statuses == ["delivered", "delivered"]


def _reply(message, who):
    from wechatpy.replies import TextReply

    return TextReply(message=message, content=f"{who}: {message.content}").render()
