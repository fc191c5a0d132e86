"""Which third-party platform the current work is for (issue #16).

Every WeChat call, every push's keys, every credential row and every account belongs to one
platform. A request or job runs its work inside `using(component_appid)`; outside one, the work
is the default platform's, the one the WECHAT_* variables describe. A plain context variable:
the models use it as their default and the services read it, so code written for one platform
reads as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from flask import current_app

_CURRENT: ContextVar[str | None] = ContextVar("grantdesk_platform", default=None)


def default_appid() -> str:
    return current_app.config["WECHAT_COMPONENT_APPID"]


def current_appid() -> str:
    """The component appid the current work is for (the default platform outside `using`)."""
    return _CURRENT.get() or default_appid()


def is_default(component_appid: str) -> bool:
    return component_appid == default_appid()


def platform_detail(component_appid: str | None = None) -> dict[str, str]:
    """Audit detail naming the platform (default: the current one), empty for the default
    platform: a one-platform deployment's entries read as before."""
    component_appid = component_appid or current_appid()
    return {} if is_default(component_appid) else {"component_appid": component_appid}


def account_ref(appid: str) -> str:
    """The stable pseudonym of the current platform's account `appid`, kept in tombstones,
    purge keys, attention and webhook rows. The default platform's is the one used before
    several platforms existed, so existing keys still match."""
    from app.models.grants import appid_ref  # the models use this module: import at call time

    component = current_appid()
    return appid_ref(appid if is_default(component) else f"{component}:{appid}")


@contextmanager
def using(component_appid: str) -> Iterator[str]:
    """Run the block as `component_appid`'s work: its keys, credentials, accounts and client."""
    reset = _CURRENT.set(component_appid)
    try:
        yield component_appid
    finally:
        _CURRENT.reset(reset)
