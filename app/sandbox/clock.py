"""The one clock of the sandbox: real time plus a travel offset (for expiry tests)."""

import time
from datetime import UTC, datetime, timedelta

from app.sandbox import runtime

BEIJING = timedelta(hours=8)


def now() -> float:
    """Current sandbox time, Unix seconds."""
    return time.time() + runtime.get().clock_offset


def set_offset(seconds: float) -> float:
    """Move the sandbox clock to real time + `seconds`; return the new now()."""
    runtime.get().clock_offset = float(seconds)
    return now()


def beijing_day(at: float | None = None) -> str:
    """The Asia/Shanghai date of `at` (WeChat's daily quotas reset at Beijing midnight)."""
    moment = datetime.fromtimestamp(now() if at is None else at, UTC) + BEIJING
    return moment.strftime("%Y-%m-%d")


def iso(at: float | None) -> str | None:
    """Format a sandbox timestamp for JSON and pages (UTC, ISO 8601)."""
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
