"""The booking form in real headless Chromium (Debian's), driven by Playwright.

A guest whose browser is in New York opens the page (the zone is detected),
switches to Tokyo, picks a day and a time, fills the form and books; the
confirmation is screenshotted into test-artifacts/ (or $FBPROXY_ARTIFACTS).
The same booking also works with JavaScript off.
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Browser, expect

from tests.booking_world import started
from tests.browser import watch_console


async def test_a_guest_books_in_another_time_zone(browser: Browser, artifacts: Path, sources,
                                                  make_config, serve) -> None:
    client, runtime = await started(make_config, sources, serve)
    context = await browser.new_context(timezone_id="America/New_York", locale="en-US",
                                        viewport={"width": 390, "height": 844})  # a phone
    page = await context.new_page()
    errors = watch_console(page)
    await page.goto(str(client.make_url("/book/intro")))
    # The page's zone is UTC; the browser's was detected and applied.
    await expect(page.locator(".meta")).to_contain_text("America/New_York")
    assert "tz=America%2FNew_York" in page.url

    await page.select_option("#tz", "Asia/Tokyo")  # applies itself (no button with JS)
    await expect(page.locator(".meta")).to_contain_text("Asia/Tokyo")
    assert not await page.get_by_role("button", name="Show times").is_visible()

    await page.get_by_role("link", name=re.compile(r"^Friday, 27 November 2026")).click()
    await expect(page.get_by_role("heading", name="Friday, 27 November 2026")).to_be_visible()
    # Hours are 09:00-12:00 UTC: 18:00-21:00 in Tokyo. Pick one with the keyboard.
    slot = page.get_by_role("link", name="18:30", exact=True)
    await slot.focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_text("Friday, 27 November 2026, 18:30–19:00 (Asia/Tokyo)")
                 ).to_be_visible()

    await page.get_by_label("Your name").fill("Aiko Tanaka")
    await page.get_by_label("Your email").fill("aiko@example.org")
    await page.get_by_label(re.compile("^Topic")).fill("Planning <b>Q1</b>")
    await page.screenshot(path=str(artifacts / "booking-form.png"), full_page=True)
    await page.get_by_label("Your email").press("Enter")

    await expect(page.get_by_role("heading", name="You are booked")).to_be_visible()
    await expect(page.get_by_text("Friday, 27 November 2026, 18:30–19:00 (Asia/Tokyo)")
                 ).to_be_visible()
    await page.screenshot(path=str(artifacts / "booking-confirmation.png"), full_page=True)
    assert errors == []

    booking_id = page.url.split("/booking/")[1].split("?")[0]
    booking = await runtime.store.booking(booking_id)
    assert booking is not None
    assert (booking.start, booking.guest_timezone) == (1795771800, "Asia/Tokyo")  # 09:30Z
    assert booking.answers == {"topic": "Planning <b>Q1</b>"}

    # The guest cancels from the same page, confirming with a reason.
    await page.get_by_role("button", name="Cancel this booking").click()
    await page.get_by_label(re.compile("^Reason")).fill("Something came up")
    await page.get_by_role("button", name="Yes, cancel this booking").click()
    await expect(page.get_by_role("heading", name="This booking is cancelled")).to_be_visible()
    cancelled = await runtime.store.booking(booking_id)
    assert cancelled is not None and cancelled.status == "cancelled"
    assert cancelled.cancel_reason == "Something came up"
    await context.close()


async def test_the_form_works_without_javascript(browser: Browser, sources, make_config,
                                                 serve) -> None:
    client, runtime = await started(make_config, sources, serve)
    context = await browser.new_context(java_script_enabled=False,
                                        timezone_id="America/New_York")
    page = await context.new_page()
    await page.goto(str(client.make_url("/book/intro")))
    await expect(page.locator(".meta")).to_contain_text("UTC"), "no detection without JS"
    await page.select_option("#tz", "Europe/Berlin")
    await page.get_by_role("button", name="Show times").click()
    await expect(page.locator(".meta")).to_contain_text("Europe/Berlin")
    await page.get_by_role("link", name="11:00", exact=True).click()
    await page.get_by_label("Your name").fill("Noscript Guest")
    await page.get_by_label("Your email").fill("guest@example.org")
    await page.get_by_role("button", name="Book this time").click()
    await expect(page.get_by_role("heading", name="You are booked")).to_be_visible()
    slots = await (await client.get(
        "/api/v1/pages/intro/slots?start=2026-11-26&end=2026-11-27")).json()
    assert "2026-11-26T10:00:00Z" not in [s["start"] for s in slots["slots"]]  # 11:00 Berlin
    await context.close()
