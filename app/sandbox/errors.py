"""WeChat's error answers: `{"errcode": N, "errmsg": "… rid: …"}` (reference §6)."""

import secrets

ERRMSG = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40013: "invalid appid",
    40014: "invalid access_token",
    40125: "invalid appsecret",
    41001: "access_token missing",
    41002: "appid missing",
    41004: "appsecret missing",
    42001: "access_token expired",
    44002: "empty post data",
    45009: "reach max api daily quota limit",
    47001: "data format error",
    48006: "forbid to clear quota because of reaching the limit",
    61003: "component is not authorized by this account",
    61004: "access clientip is not registered",
    61005: "component ticket is expired",
    61006: "component ticket is invalid",
    61007: "api is unauthorized to component",
    61009: "code is invalid",
    61010: "code is expired",
    61011: "invalid component",
    61013: "invalid option value",
    61014: "must use component token",
    61023: "refresh_token is invalid",
    61028: "component is unpublished",
}


class WechatError(Exception):
    """A failure the sandbox answers with WeChat's errcode/errmsg."""

    def __init__(self, errcode: int, detail: str = ""):
        super().__init__(errcode, detail)
        self.errcode = errcode
        self.detail = detail

    def payload(self) -> dict:
        """The JSON body WeChat would send, with a fresh rid."""
        message = ERRMSG.get(self.errcode, "error")
        if self.detail:
            message = f"{message} {self.detail}"
        return {"errcode": self.errcode, "errmsg": f"{message} rid: {new_rid()}"}


class ConsentError(Exception):
    """Why the phone flow refused to authorize (shown on the page, 400 on the control API);
    `errcode`: WeChat's code for the same refusal, when it has one."""

    def __init__(self, code: str, message: str, *, errcode: int | None = None):
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.errcode = errcode

    def payload(self) -> dict:
        """The control API's 400 body: {error, message} (+ errcode, errmsg)."""
        body = {"error": self.code, "message": self.message}
        if self.errcode is not None:
            body.update(WechatError(self.errcode).payload())
        return body


def new_rid() -> str:
    """A request id shaped like WeChat's `xxxxxxxx-xxxxxxxx-xxxxxxxx`."""
    return "-".join(secrets.token_hex(4) for _ in range(3))
