"""A real browser for page tests: Debian chromium driven by Playwright (never `playwright install`).

Fixtures:

- ``browser`` (session): a headless chromium ``Browser``; tests open contexts/pages from it.
- ``artifacts`` (function): ``test-artifacts/<test name>/``, where tests save screenshots for people
  to look at (ignored by git).

Tests using them should carry ``pytestmark = requires_chromium`` (the e2e marker plus a clear skip
when chromium is not installed).
"""

import os
import re
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PHONE = {
    "viewport": {"width": 375, "height": 812},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
DESKTOP = {"viewport": {"width": 1280, "height": 800}}

requires_chromium = [
    pytest.mark.e2e,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed"),
]


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM,
            # The machine has no network: keep chromium from trying to phone home.
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield instance
        instance.close()


@pytest.fixture
def artifacts(request) -> Path:
    name = re.sub(r"[^\w.-]+", "_", request.node.name)
    path = ARTIFACTS / name
    path.mkdir(parents=True, exist_ok=True)
    return path
