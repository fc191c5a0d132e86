"""Release checks against a fake message handler, and the portal's ComponentClient end to end."""

import threading

import pytest

from app.wechat.client import ComponentClient
from app.wechat.crypto import MessageCrypto
from app.wechat.errors import ApiError
from app.wechat.events import TextMessage, build_text_reply_xml, parse_message


def client_for(sandbox) -> ComponentClient:
    return ComponentClient(
        sandbox.component_appid, sandbox.component_secret, api_base=sandbox.url, retries=0
    )


def crypto_for(sandbox):
    config = sandbox.app.config
    return MessageCrypto(
        config["WECHAT_TOKEN"], config["WECHAT_ENCODING_AES_KEY"], config["WECHAT_COMPONENT_APPID"]
    )


class FakePortal:
    """Answers release-check messages the way a correct platform does (or not)."""

    def __init__(self, sandbox, *, encrypt_replies=True, wrong_text=False, skip_api=False):
        self.sandbox, self.crypto = sandbox, crypto_for(sandbox)
        self.client = client_for(sandbox)
        self.encrypt_replies, self.wrong_text, self.skip_api = encrypt_replies, wrong_text, skip_api
        self.threads = []

    def __call__(self, request):
        message = parse_message(request.open(self.crypto))
        content = message.event + "from_callback" if not isinstance(message, TextMessage) else None
        if isinstance(message, TextMessage):
            if message.content.startswith("QUERY_AUTH_CODE:"):
                code = message.content.split(":", 1)[1]
                thread = threading.Thread(
                    target=self._answer_later, args=(code, message.from_user_name)
                )
                thread.start()
                self.threads.append(thread)
                return ""
            content = message.content + ("_wrong" if self.wrong_text else "_callback")
        reply = build_text_reply_xml(message, content, message.create_time)
        if self.encrypt_replies:
            return self.crypto.encrypt_reply(
                reply, request.query["timestamp"], request.query["nonce"]
            )
        return reply

    def _answer_later(self, code, openid):
        if self.skip_api:
            return
        token = self.client.component_token(self.sandbox.push_ticket()).component_access_token
        info = self.client.query_auth(token, code)
        self.client.send_custom_message(info.authorizer_access_token, openid, f"{code}_from_api")


@pytest.mark.parametrize("encrypt_replies", [True, False])
def test_release_checks_pass_for_a_correct_platform(sandbox, receiver, encrypt_replies):
    sandbox.configure(message_url=receiver.message_url)
    receiver.default_reply = FakePortal(sandbox, encrypt_replies=encrypt_replies)
    report = sandbox.release_check(wait_seconds=5)
    assert report["passed"], report
    assert [(c["check"], c["passed"]) for c in report["checks"]] == [
        ("event", True),
        ("text", True),
        ("query_auth_code", True),
        ("text", True),
        ("query_auth_code", True),
    ]
    paths = {r.path for r in receiver.requests}
    assert paths == {"/wechat/messages/wx570bc396a51b8ff8", "/wechat/messages/wxd101a85aa106f53e"}
    assert all(r.query["openid"] and r.query["encrypt_type"] == "aes" for r in receiver.requests)
    assert sandbox.state()["release_check"]["passed"] is True


def test_release_checks_report_reasons(sandbox, receiver):
    sandbox.configure(message_url=receiver.message_url)
    receiver.default_reply = FakePortal(sandbox, wrong_text=True, skip_api=True)
    report = sandbox.release_check(wait_seconds=0.3, appids=["wx570bc396a51b8ff8"])
    assert not report["passed"]
    by_check = {c["check"]: c for c in report["checks"]}
    assert by_check["event"]["passed"]
    assert "TESTCOMPONENT_MSG_TYPE_TEXT_callback" in by_check["text"]["reason"]
    assert "no customer-service message" in by_check["query_auth_code"]["reason"]


def test_component_client_full_cycle(sandbox):
    client = client_for(sandbox)
    token = client.component_token(sandbox.push_ticket()).component_access_token
    code = client.create_preauthcode(token).pre_auth_code
    account = sandbox.account(scenario="fresh", type="mini_program")
    consent = sandbox.consent(code, account["admin"], account["appid"], [17, 18])
    info = client.query_auth(token, consent["auth_code"])
    assert info.authorizer_appid == account["appid"]
    assert {f.id for f in info.func_info} == {17, 18}
    refreshed = client.authorizer_token(token, account["appid"], info.authorizer_refresh_token)
    assert refreshed.authorizer_refresh_token == info.authorizer_refresh_token
    details = client.get_authorizer_info(token, account["appid"])
    assert details.authorizer_info.mini_program_info is not None
    listed = {item.authorizer_appid: item for item in client.iter_authorizers(token)}
    assert listed[account["appid"]].refresh_token == info.authorizer_refresh_token
    assert client.start_push_ticket().already_running is True
    with pytest.raises(ApiError) as failure:
        client.query_auth(token, consent["auth_code"])
    assert failure.value.errcode == 61009
    assert sandbox.api_calls()["api_query_auth"] == 2
