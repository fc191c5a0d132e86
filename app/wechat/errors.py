"""Typed errors of the WeChat protocol library (reference §1.8 crypto codes, §6 API codes)."""

from __future__ import annotations

import re

__all__ = [
    "WeChatError",
    "CryptoError",
    "SignatureError",
    "MalformedMessage",
    "InvalidAesKey",
    "AppIdMismatch",
    "EncryptError",
    "DecryptError",
    "IllegalBuffer",
    "InvalidBase64",
    "ApiError",
    "SystemBusy",
    "InvalidCredential",
    "QuotaExceeded",
    "NotAuthorized",
    "TicketInvalid",
    "CodeInvalid",
    "InvalidRefreshToken",
    "IpNotWhitelisted",
    "TransportError",
    "UnexpectedResponse",
    "api_error_from_response",
]


class WeChatError(Exception):
    """Base of every error raised by app.wechat. Reference §1.8, §6."""


# --- message crypto (official WXBizMsgCrypt codes) ------------------------------------------


class CryptoError(WeChatError):
    """A message-crypto failure carrying the official code. Reference §1.8."""

    default_code: int = -40000

    def __init__(self, message: str = "", code: int | None = None) -> None:
        self.code: int = self.default_code if code is None else code
        super().__init__(f"[{self.code}] {message or type(self).__name__}")


class SignatureError(CryptoError):
    """msg_signature / signature mismatch (−40001). Reference §1.5, §1.8."""

    default_code = -40001


class MalformedMessage(CryptoError):
    """XML missing, unparsable, forbidden (DTD/entities), oversize or odd (−40002). Ref §1.8."""

    default_code = -40002


class InvalidAesKey(CryptoError):
    """EncodingAESKey is not 43 alphanumerics decoding to 32 bytes (−40004). Reference §1.2."""

    default_code = -40004


class AppIdMismatch(CryptoError):
    """Receive-id inside the plaintext differs from our appid (−40005). Reference §1.3."""

    default_code = -40005


class EncryptError(CryptoError):
    """Encryption could not be performed (−40006). Reference §1.8."""

    default_code = -40006


class DecryptError(CryptoError):
    """AES decryption or strict PKCS#7 unpadding failed (−40007). Reference §1.4."""

    default_code = -40007


class IllegalBuffer(DecryptError):
    """Decrypted buffer malformed: too short, bad length field, not UTF-8 (−40008). Ref §1.3."""

    default_code = -40008


class InvalidBase64(DecryptError):
    """The Encrypt text is not strict standard base64 (−40010). Reference §1.4, §1.8."""

    default_code = -40010


# --- component HTTP APIs --------------------------------------------------------------------

_RID_RE = re.compile(r"rid:\s*([0-9A-Za-z_-]+)")
_HINT_RE = re.compile(r"hint:\s*\[([^\]]+)\]")


class ApiError(WeChatError):
    """A WeChat API answered with a non-zero errcode. Reference §3, §6."""

    def __init__(self, errcode: int, errmsg: str = "", rid: str | None = None) -> None:
        self.errcode = errcode
        self.errmsg = errmsg
        self.rid = rid
        super().__init__(f"WeChat API error {errcode}: {errmsg}")


class SystemBusy(ApiError):
    """errcode −1: WeChat busy, retried with backoff. Reference §6."""


class InvalidCredential(ApiError):
    """errcode 40001/40014/42001: the token used is invalid or expired. Reference §6."""

    def __init__(
        self, errcode: int, errmsg: str = "", rid: str | None = None, *, token: str | None = None
    ) -> None:
        super().__init__(errcode, errmsg, rid)
        # Kept for compare-and-swap invalidation by the caller; deliberately not in str()/args.
        self.token = token

    def __repr__(self) -> str:
        return f"InvalidCredential(errcode={self.errcode}, rid={self.rid!r})"


class QuotaExceeded(ApiError):
    """errcode 45009: daily API quota exhausted. Reference §3.11, §6."""


class NotAuthorized(ApiError):
    """errcode 61003: the account has not (or no longer) authorized the platform. Reference §6."""


class TicketInvalid(ApiError):
    """errcode 61005/61006: component_verify_ticket expired or invalid. Reference §3.1, §6."""


class CodeInvalid(ApiError):
    """errcode 61009/61010: authorization code invalid, used or expired. Reference §3.3, §6."""


class InvalidRefreshToken(ApiError):
    """errcode 61023: authorizer_refresh_token invalid. Reference §3.4, §6."""


class IpNotWhitelisted(ApiError):
    """errcode 61004 (40164 in newer wording): our outbound IP is not on the platform's whitelist.

    Not transient: nothing changes until someone adds the address in the Open Platform console.
    Reference §3, §6, §7.
    """

    REMEDY = (
        "Add this server's outbound IP address{ip} to the IP whitelist of the third-party "
        "platform in the WeChat Open Platform console (Third-party platform > Development "
        "settings > Whitelisted IP addresses), then retry."
    )

    @property
    def client_ip(self) -> str | None:
        """The address WeChat saw, when its errmsg names it ("requestIP: x" / "invalid ip x")."""
        match = _CLIENT_IP_RE.search(self.errmsg)
        return match.group(1) if match else None

    @property
    def remedy(self) -> str:
        """What staff must do, in plain English."""
        return self.REMEDY.format(ip=f" ({self.client_ip})" if self.client_ip else "")


_CLIENT_IP_RE = re.compile(r"(?:requestIP:|invalid ip)\s*([0-9A-Fa-f.:]+[0-9A-Fa-f])")


class TransportError(WeChatError):
    """Network failure, timeout, a 5xx or a non-JSON answer after bounded retries. Reference §3.

    Transient: the call may or may not have reached WeChat; callers retry later.
    """


_CODE_MAP: dict[int, type[ApiError]] = {
    -1: SystemBusy,
    40001: InvalidCredential,
    40014: InvalidCredential,
    42001: InvalidCredential,
    45009: QuotaExceeded,
    40164: IpNotWhitelisted,
    61003: NotAuthorized,
    61004: IpNotWhitelisted,
    61005: TicketInvalid,
    61006: TicketInvalid,
    61009: CodeInvalid,
    61010: CodeInvalid,
    61023: InvalidRefreshToken,
}


def parse_rid(errmsg: str) -> str | None:
    """Extract the request id from "errmsg ... rid: xxx" (or legacy "hint: [xxx]"). Ref §3, §6."""
    match = _RID_RE.search(errmsg) or _HINT_RE.search(errmsg)
    return match.group(1) if match else None


def api_error_from_response(errcode: int, errmsg: str, *, token: str | None = None) -> ApiError:
    """Build the most specific ApiError for an errcode. Reference §6."""
    cls = _CODE_MAP.get(errcode, ApiError)
    rid = parse_rid(errmsg)
    if cls is InvalidCredential:
        return InvalidCredential(errcode, errmsg, rid, token=token)
    return cls(errcode, errmsg, rid)


class UnexpectedResponse(TransportError):
    """A success answer lacking the fields the API promises. Reference §3."""
