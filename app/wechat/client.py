"""ComponentClient: every component API of reference §3 with typed results and errors."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import requests
from urllib3.exceptions import NewConnectionError

from app.wechat.errors import (
    SystemBusy,
    TransportError,
    UnexpectedResponse,
    api_error_from_response,
)
from app.wechat.results import (
    AuthorizationInfo,
    AuthorizerDetails,
    AuthorizerListItem,
    AuthorizerOption,
    AuthorizerToken,
    ComponentToken,
    PreAuthCode,
    StartPushTicketResult,
)

__all__ = ["ComponentClient", "DEFAULT_API_BASE"]

log = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://api.weixin.qq.com"
_COMPONENT = "/cgi-bin/component"
MAX_LIST_PAGE = 500  # api_get_authorizer_list caps count at 500 (§3.6)

Timeout = float | tuple[float, float]


class ComponentClient:
    """HTTP client for the component APIs; tokens are passed per call. Reference §3."""

    def __init__(
        self,
        component_appid: str,
        component_appsecret: str,
        *,
        api_base: str = DEFAULT_API_BASE,
        timeout: Timeout = (3.05, 10),
        session: requests.Session | None = None,
        retries: int = 2,
        backoff_base: float = 0.5,
        backoff_max: float = 4.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not component_appid:
            raise ValueError("component_appid is required")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.component_appid = component_appid
        self._appsecret = component_appsecret
        self.api_base = api_base.rstrip("/")
        self.timeout = timeout
        self._session = session or requests.Session()
        self._retries = retries
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._sleep = sleep

    def __repr__(self) -> str:  # the appsecret never appears
        return (
            f"ComponentClient(component_appid={self.component_appid!r}, api_base={self.api_base!r})"
        )

    # --- APIs -----------------------------------------------------------------------------

    def component_token(self, component_verify_ticket: str) -> ComponentToken:
        """api_component_token: mint a component_access_token from the ticket. Reference §3.1."""
        body = {
            "component_appid": self.component_appid,
            "component_appsecret": self._appsecret,
            "component_verify_ticket": component_verify_ticket,
        }
        return ComponentToken.from_json(self._post(f"{_COMPONENT}/api_component_token", body))

    def create_preauthcode(self, component_access_token: str) -> PreAuthCode:
        """api_create_preauthcode: a fresh single-use pre_auth_code. Reference §3.2."""
        data = self._post(
            f"{_COMPONENT}/api_create_preauthcode",
            {"component_appid": self.component_appid},
            token=component_access_token,
        )
        return PreAuthCode.from_json(data)

    def query_auth(self, component_access_token: str, authorization_code: str) -> AuthorizationInfo:
        """api_query_auth: exchange an authorization code for the grant. Reference §3.3."""
        data = self._post(
            f"{_COMPONENT}/api_query_auth",
            {"component_appid": self.component_appid, "authorization_code": authorization_code},
            token=component_access_token,
            idempotent=False,  # the code is (probably) single use: never resend a maybe-sent call
        )
        return AuthorizationInfo.from_json(data.get("authorization_info"))

    def authorizer_token(
        self, component_access_token: str, authorizer_appid: str, authorizer_refresh_token: str
    ) -> AuthorizerToken:
        """api_authorizer_token: refresh an authorizer_access_token. Reference §3.4."""
        body = {
            "component_appid": self.component_appid,
            "authorizer_appid": authorizer_appid,
            "authorizer_refresh_token": authorizer_refresh_token,
        }
        data = self._post(f"{_COMPONENT}/api_authorizer_token", body, token=component_access_token)
        return AuthorizerToken.from_json(data)

    def get_authorizer_info(
        self, component_access_token: str, authorizer_appid: str
    ) -> AuthorizerDetails:
        """api_get_authorizer_info: profile, account type and current grant. Reference §3.5."""
        body = {"component_appid": self.component_appid, "authorizer_appid": authorizer_appid}
        data = self._post(
            f"{_COMPONENT}/api_get_authorizer_info", body, token=component_access_token
        )
        return AuthorizerDetails.from_json(data)

    def iter_authorizers(
        self, component_access_token: str, *, page_size: int = MAX_LIST_PAGE
    ) -> Iterator[AuthorizerListItem]:
        """api_get_authorizer_list, paged until offset ≥ total_count. Reference §3.6."""
        if not 1 <= page_size <= MAX_LIST_PAGE:
            raise ValueError(f"page_size must be 1..{MAX_LIST_PAGE}")
        offset = 0
        while True:
            body = {"component_appid": self.component_appid, "offset": offset, "count": page_size}
            data = self._post(
                f"{_COMPONENT}/api_get_authorizer_list", body, token=component_access_token
            )
            total = data.get("total_count")
            rows = data.get("list") or []
            if not isinstance(total, int) or not isinstance(rows, list):
                raise UnexpectedResponse("authorizer list lacks total_count/list")
            for row in rows:
                yield AuthorizerListItem.from_json(row)
            offset += len(rows)
            # An empty page ends the walk even if total_count disagrees, so it always terminates.
            if not rows or offset >= total:
                return

    def get_authorizer_option(
        self, component_access_token: str, authorizer_appid: str, option_name: str
    ) -> AuthorizerOption:
        """Legacy api_get_authorizer_option. Reference §3.7."""
        body = {
            "component_appid": self.component_appid,
            "authorizer_appid": authorizer_appid,
            "option_name": option_name,
        }
        data = self._post(
            f"{_COMPONENT}/api_get_authorizer_option", body, token=component_access_token
        )
        return AuthorizerOption.from_json(data)

    def set_authorizer_option(
        self,
        component_access_token: str,
        authorizer_appid: str,
        option_name: str,
        option_value: str,
    ) -> None:
        """Legacy api_set_authorizer_option. Reference §3.7."""
        body = {
            "component_appid": self.component_appid,
            "authorizer_appid": authorizer_appid,
            "option_name": option_name,
            "option_value": str(option_value),
        }
        self._post(f"{_COMPONENT}/api_set_authorizer_option", body, token=component_access_token)

    def start_push_ticket(self) -> StartPushTicketResult:
        """api_start_push_ticket: (re)start ticket pushes; uses the appsecret. Reference §3.10."""
        body = {"component_appid": self.component_appid, "component_secret": self._appsecret}
        data = self._post(f"{_COMPONENT}/api_start_push_ticket", body)
        errmsg = str(data.get("errmsg", ""))
        return StartPushTicketResult(already_running="normal" in errmsg.lower(), errmsg=errmsg)

    def clear_quota(self, component_access_token: str) -> None:
        """clear_quota with the component token (10 resets a month). Reference §3.11."""
        self._post(
            "/cgi-bin/clear_quota",
            {"appid": self.component_appid},
            token=component_access_token,
            token_param="access_token",
            idempotent=False,  # each call spends one of the 10 monthly resets
        )

    def clear_quota_v2(self, *, authorizer_appid: str | None = None) -> None:
        """clear_quota/v2 with the appsecret, for when the token API itself hit 45009. Ref §3.11."""
        body = {"component_appid": self.component_appid, "appsecret": self._appsecret}
        if authorizer_appid:
            body["appid"] = authorizer_appid
        self._post(f"{_COMPONENT}/clear_quota/v2", body, idempotent=False)

    def send_custom_message(self, authorizer_access_token: str, touser: str, content: str) -> None:
        """Customer-service text message (release check QUERY_AUTH_CODE step). Ref §4.1, release."""
        body = {"touser": touser, "msgtype": "text", "text": {"content": content}}
        self._post(
            "/cgi-bin/message/custom/send",
            body,
            token=authorizer_access_token,
            token_param="access_token",
            idempotent=False,  # a resend would message the user twice
        )

    # --- transport ------------------------------------------------------------------------

    def _post(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        token: str | None = None,
        token_param: str = "component_access_token",
        idempotent: bool = True,
    ) -> dict[str, Any]:
        """POST JSON with bounded retries on −1 and network errors. Reference §3, §6."""
        attempts = self._retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return self._post_once(path, body, token, token_param)
            except SystemBusy as exc:
                if attempt == attempts:
                    raise
                log.warning("wechat %s: system busy (rid=%s), attempt %d", path, exc.rid, attempt)
            except _Retryable as exc:
                if attempt == attempts or not (idempotent or exc.not_sent):
                    raise exc.final(f"{path}: {exc.reason}") from None
                log.warning("wechat %s: %s, attempt %d", path, exc.reason, attempt)
            self._sleep(self._delay(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _delay(self, attempt: int) -> float:
        ceiling = min(self._backoff_max, self._backoff_base * 2 ** (attempt - 1))
        # Equal jitter: spread concurrent retriers without ever retrying instantly.
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _post_once(
        self, path: str, body: Mapping[str, Any], token: str | None, token_param: str
    ) -> dict[str, Any]:
        # ensure_ascii=False: some message APIs show \u-escapes literally instead of the text.
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        try:
            response = self._session.post(
                self.api_base + path,
                params={token_param: token} if token is not None else None,
                data=payload,
                headers={"Content-Type": "application/json; charset=utf-8"},
                timeout=self.timeout,
            )
        except (requests.ConnectTimeout, requests.ConnectionError) as exc:
            not_sent = isinstance(exc, requests.ConnectTimeout) or _is_connect_failure(exc)
            raise _Retryable(type(exc).__name__, not_sent=not_sent) from None
        except requests.Timeout as exc:
            raise _Retryable(type(exc).__name__, not_sent=False) from None
        except requests.RequestException as exc:
            raise TransportError(f"{path}: {type(exc).__name__}") from None
        return self._decode(path, response, token)

    def _decode(self, path: str, response: requests.Response, token: str | None) -> dict[str, Any]:
        if response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code}", not_sent=False)
        if response.status_code != 200:
            raise TransportError(f"{path}: HTTP {response.status_code}")
        try:
            data = json.loads(response.content.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            # A gateway's HTML page in place of WeChat's answer: transient, like a 5xx.
            raise _Retryable(
                "answer is not JSON", not_sent=False, final=UnexpectedResponse
            ) from None
        if not isinstance(data, dict):
            raise UnexpectedResponse(f"{path}: answer is not a JSON object")
        errcode = data.get("errcode", 0)
        if errcode in (0, None):
            return data
        if not isinstance(errcode, int):
            raise UnexpectedResponse(f"{path}: errcode is not an integer")
        error = api_error_from_response(errcode, str(data.get("errmsg", "")), token=token)
        log.info("wechat %s: errcode=%s rid=%s", path, errcode, error.rid)
        raise error


class _Retryable(Exception):
    """Internal: a failure that may be retried (network, timeout, 5xx, non-JSON answer)."""

    def __init__(
        self, reason: str, *, not_sent: bool, final: type[TransportError] = TransportError
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.not_sent = not_sent
        self.final = final  # what the caller gets once the retries are spent


def _is_connect_failure(exc: requests.ConnectionError) -> bool:
    # Connection refused / DNS failure: the request never left, so a resend is always safe.
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, NewConnectionError):
            return True
        reason = getattr(current, "reason", None)
        nested = (
            current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        )
        current = reason if isinstance(reason, BaseException) else nested or current.__cause__
    return False
