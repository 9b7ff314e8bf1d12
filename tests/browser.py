"""Real headless Chromium (Debian's) through Playwright, for the browser tests.

Registered as a pytest plugin (see conftest): ``browser`` and ``artifacts``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.conftest import REPO

CHROMIUM = shutil.which("chromium")


@pytest.fixture
def artifacts() -> Path:
    folder = Path(os.environ.get("FBPROXY_ARTIFACTS", REPO / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def browser_env() -> dict[str, str | float | bool]:
    """Chromium's environment: ours, without libfaketime in a faketime run.

    Chromium aborts under libfaketime ("clock_gettime(CLOCK_REALTIME) failed"), and
    it need not share the faked date: the booking pages are rendered by the server
    on the test's clock, and their script never reads the time.
    """
    env: dict[str, str | float | bool] = dict(os.environ)
    if "FAKETIME" in env:
        env.pop("LD_PRELOAD", None)
    return env


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert CHROMIUM is not None, "install Debian's chromium (scripts/test does)"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, env=browser_env(),
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        yield launched
        await launched.close()


def watch_console(page: Page) -> list[str]:
    """Errors the page logs (a CSP violation or a script error would show here)."""
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors
