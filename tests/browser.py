"""Real headless Chromium (Debian's) through Playwright, for the browser tests.

Registered as a pytest plugin (see conftest): ``browser`` and ``artifacts``; and
``audit``, axe-core's accessibility audit of a page (axe-core from npm, pinned by
tests/package-lock.json, installed into tests/node_modules by scripts/test).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.conftest import REPO

CHROMIUM = shutil.which("chromium")
AXE = REPO / "tests" / "node_modules" / "axe-core" / "axe.min.js"
AXE_LOCK = REPO / "tests" / "package-lock.json"
# What fails an audit; "minor" and "moderate" findings are printed, not failed.
FAILING_IMPACTS = frozenset({"serious", "critical"})


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


def axe_script() -> Path:
    """axe.min.js, at the version the lock pins; a failure (never a skip) without it."""
    pinned = json.loads(AXE_LOCK.read_text())["packages"]["node_modules/axe-core"]["version"]
    assert AXE.is_file(), (f"axe-core is missing ({AXE}): run scripts/test, which installs it "
                           "(npm ci --prefix tests)")
    installed = json.loads((AXE.parent / "package.json").read_text())["version"]
    assert installed == pinned, (f"axe-core {installed} is installed, the lock pins {pinned}: "
                                 "run scripts/test (npm ci --prefix tests)")
    return AXE


async def audit(page: Page, name: str) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.x A/AA audit (and its best practices) of the page as it is now.

    Returns the violations; fails on any "serious" or "critical" one, naming the rule,
    the elements and axe's own summary, and prints the minor and moderate ones.

    The pages' CSP (``script-src 'self'``) refuses an injected script, so the page
    must come from a context made with ``bypass_csp=True`` (``audit_context``): the
    audits' contexts only, never the product's CSP, which the other browser tests
    check stays strict.
    """
    await page.add_script_tag(path=str(axe_script()))
    result = await page.evaluate("""async () => {
        const result = await axe.run(document, {
            runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa",
                                            "wcag22aa", "best-practice"]},
            resultTypes: ["violations"],
        });
        return result.violations.map(v => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map(n => ({target: n.target.join(" "),
                                      summary: n.failureSummary})),
        }));
    }""")
    violations: list[dict[str, Any]] = list(result)
    for violation in violations:
        if violation["impact"] not in FAILING_IMPACTS:
            targets = ", ".join(node["target"] for node in violation["nodes"])
            print(f"axe {name}: {violation['impact']} {violation['id']} "
                  f"({violation['help']}): {targets}")
    failing = [violation for violation in violations if violation["impact"] in FAILING_IMPACTS]
    assert not failing, f"axe-core on {name}:\n" + "\n".join(
        f"- {v['impact']} {v['id']}: {v['help']}\n" + "\n".join(
            f"    {node['target']}: {node['summary']}" for node in v["nodes"])
        for v in failing)
    return violations


async def audit_context(browser: Browser, **options: Any) -> BrowserContext:
    """A browser context for audits: ``bypass_csp`` lets the test inject axe-core only."""
    return await browser.new_context(bypass_csp=True, **options)
