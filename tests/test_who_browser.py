"""Who and where, and the zone picker, in real headless Chromium (issue 24).

At a phone's and a desktop's size a guest in Berlin sees the host's name and
picture, the location with the length, and finds Tokyo by typing in the zone
search; the page sets no inline style or script (the console stays empty, so no
CSP violation). Screenshots: test-artifacts/who-*.png.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.booking_world import started
from tests.browser import watch_console


def png(size: int, rgb: tuple[int, int, int]) -> bytes:
    """A real PNG of one colour with a lighter ring, so the screenshot shows it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    rows = b""
    for y in range(size):
        row = b"\x00"
        for x in range(size):
            far = (x - size / 2) ** 2 + (y - size / 2) ** 2 > (size / 3) ** 2
            row += bytes(min(255, c + 90) if far else c for c in rgb)
        rows += row
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize(("width", "height"), [(390, 844), (1366, 900)])
async def test_the_guest_sees_who_and_where_and_finds_tokyo(
        browser: Browser, artifacts: Path, sources, make_config, serve, tmp_path: Path,
        width: int, height: int) -> None:
    (tmp_path / "alex.png").write_bytes(png(96, (40, 90, 160)))
    (tmp_path / "logo.png").write_bytes(png(40, (200, 80, 20)))
    client, _ = await started(
        make_config, sources, serve, timezone="Europe/Berlin", logo="logo.png",
        accent_color="#7b2cbf", video_link="https://meet.jit.si/fbproxy-{random}",
        calendars={"alex": {"display_name": "Alex Doe", "avatar": "alex.png"}})
    context = await browser.new_context(timezone_id="Europe/Berlin", locale="en-GB",
                                        viewport={"width": width, "height": height})
    page = await context.new_page()
    errors = watch_console(page)
    await page.goto(str(client.make_url("/book/intro")))

    await expect(page.locator(".host-name")).to_have_text("Alex Doe")
    avatar = page.locator("img.avatar")
    await expect(avatar).to_be_visible()
    assert await avatar.evaluate("image => image.naturalWidth") == 96  # loaded, not broken
    assert await page.locator("img.logo").evaluate("image => image.naturalWidth") == 40
    await expect(page.locator(".location")).to_have_text("Video call (Jitsi Meet)")
    await expect(page.locator(".meta")).to_contain_text("30 min")
    # The accent colour came from the page's stylesheet, not an inline style.
    color = await page.locator(".day.open").first.evaluate(
        "day => getComputedStyle(document.documentElement).getPropertyValue('--accent')")
    assert color.strip() == "#7b2cbf"

    picker = page.locator("#tz")
    await expect(picker.locator("option").first).to_have_text(
        "(UTC+01:00) Berlin · this page's zone")
    search = page.get_by_role("searchbox", name="Search time zones")
    await expect(search).to_be_visible()
    await page.screenshot(path=str(artifacts / f"who-{width}x{height}.png"), full_page=True)

    await search.click()
    await page.keyboard.type("tokyo")
    await expect(picker.locator("option")).to_have_count(1)
    await expect(picker.locator("option")).to_have_text("(UTC+09:00) Tokyo")
    await page.screenshot(path=str(artifacts / f"who-{width}x{height}-search.png"))
    await page.keyboard.press("Enter")
    await expect(page.locator(".meta")).to_contain_text("times shown in Asia/Tokyo")
    await expect(picker.locator("option").first).to_have_text("(UTC+09:00) Tokyo")
    # An offset finds zones too.
    await page.get_by_role("searchbox", name="Search time zones").fill("+05:30")
    await expect(picker.locator("option", has_text="Kolkata")).to_have_count(1)
    assert errors == []
    await context.close()
