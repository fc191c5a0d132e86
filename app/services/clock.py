"""The portal's one clock: UTC now plus an offset tests can move (expiry logic without sleeping)."""

from datetime import UTC, datetime, timedelta

_offset = timedelta(0)


def now() -> datetime:
    """Current time as an aware UTC datetime (shifted by the test offset, if any)."""
    return datetime.now(UTC) + _offset


def travel(seconds: float) -> datetime:
    """Move the clock `seconds` from real time (tests only); returns the new now()."""
    global _offset
    _offset = timedelta(seconds=seconds)
    return now()


def advance(seconds: float) -> datetime:
    """Move the clock forward by `seconds` (tests only)."""
    return travel(_offset.total_seconds() + seconds)


def reset() -> None:
    """Back to real time."""
    travel(0)
