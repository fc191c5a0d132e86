"""Shared helpers for app.wechat tests: the official vectors and a standard crypto instance."""

import json
from pathlib import Path

import pytest

from app.wechat.crypto import MessageCrypto

DATA = Path(__file__).parent / "data"
TOKEN = "grantdeskToken123"
KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
OLD_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"
APPID = "wx6d80ca40ad4e00fc"


def load_vectors() -> dict:
    """The official vectors copied into the repo (values only)."""
    return json.loads((DATA / "official_vectors.json").read_text(encoding="utf-8"))


@pytest.fixture
def crypto() -> MessageCrypto:
    """A MessageCrypto with our own fixture credentials."""
    return MessageCrypto(TOKEN, KEY, APPID)
