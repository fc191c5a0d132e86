"""Where a `next` parameter may send a browser: the one place that decides."""

import unicodedata
from urllib.parse import unquote, urlsplit

from flask import url_for

MAX_TARGET_LENGTH = 2048
# Control, format (zero-width, bidi) and line/paragraph separators: browsers strip or
# reinterpret them (a tab in "/\t/evil" vanishes, leaving "//evil"), and CR/LF break headers.
_FORBIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
# How many rounds of percent-decoding to look through (Werkzeug decodes once; be wary of more).
_DECODE_ROUNDS = 3


def _is_site_path(candidate: str) -> bool:
    """A path-absolute reference with a single leading slash and nothing a browser rewrites."""
    if "\\" in candidate or not candidate.startswith("/") or candidate.startswith("//"):
        return False
    if any(unicodedata.category(char) in _FORBIDDEN_CATEGORIES for char in candidate):
        return False
    try:
        parts = urlsplit(candidate)
    except ValueError:
        return False
    if parts.scheme or parts.netloc:
        return False
    # "/a//b" or "/../" could be collapsed into "//host" by some normalizer along the way.
    segments = parts.path.split("/")[1:]
    return "" not in segments[:-1] and not {".", ".."} & set(segments)


def is_safe_target(target: object) -> bool:
    """True when `target` can only lead a browser to a page of this site."""
    if not isinstance(target, str) or not target or len(target) > MAX_TARGET_LENGTH:
        return False
    candidate = target
    for _ in range(_DECODE_ROUNDS):
        if not _is_site_path(candidate):
            return False
        decoded = unquote(candidate)
        if decoded == candidate:
            return True
        candidate = decoded
    return _is_site_path(candidate)


def safe_next(target: object) -> str:
    """Only same-site relative paths; anything else goes home."""
    if is_safe_target(target):
        return target  # type: ignore[return-value]
    return url_for("main.index")
