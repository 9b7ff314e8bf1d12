"""The booking form's errors in real headless Chromium (Debian's), at a phone's size:
an empty form sent shows every problem at once, focus on the summary; a time taken
meanwhile offers the nearest free ones, bookable from the same form, with and without
JavaScript. Screenshots: test-artifacts/errors-form.png, errors-taken.png.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.booking_world import guest, started
from tests.browser import watch_console

PHONE = {"width": 390, "height": 844}
# Chromium logs the status of a page answered with one (the form sent back with its
# problems is a 422, with the nearest times a 409) as a console error; nothing else
# may be logged (no script error, no CSP violation).
STATUS = "Failed to load resource: the server responded with a status of {}"
FORM = "/book/intro?tz=UTC&day=2026-11-26&start=2026-11-26T09%3A30%3A00%2B00%3A00"


async def test_an_empty_form_shows_every_error_by_its_field(browser: Browser, artifacts: Path,
                                                           sources, make_config,
                                                           serve) -> None:
    client, _ = await started(make_config, sources, serve, questions=[
        {"name": "topic", "label": "Topic", "kind": "textarea", "required": True}])
    context = await browser.new_context(timezone_id="UTC", locale="en-GB", viewport=PHONE)
    page = await context.new_page()
    errors = watch_console(page)
    await page.goto(str(client.make_url(FORM)))
    await page.get_by_role("button", name="Book this time").click()

    summary = page.get_by_role("alert")
    await expect(summary).to_be_visible()
    await expect(summary.get_by_role("heading")).to_have_text("There are 3 problems")
    await expect(summary.get_by_role("link")).to_have_text([
        "Please enter your name", "Please enter your email address, like sam@example.org",
        "Please answer “Topic”"])
    await expect(summary).to_be_focused()
    assert await summary.get_attribute("id") == "error-summary"
    await expect(summary).to_be_in_viewport()
    for field, words in (("Your name", "Please enter your name"),
                         ("Topic", "Please answer “Topic”")):
        box = page.get_by_label(field)
        await expect(box).to_have_attribute("aria-invalid", "true")
        await expect(box).to_have_accessible_description(words)
    await page.screenshot(path=str(artifacts / "errors-form.png"), full_page=True)

    # A link of the summary leads to its field; fixed, the form books.
    await summary.get_by_role("link", name="Please enter your name").click()
    assert page.url.endswith("#name")
    await expect(page.get_by_label("Your name")).to_be_in_viewport()
    await page.get_by_label("Your name").fill("Sam Guest")
    await page.get_by_label("Your email").fill("sam@example.org")
    await page.get_by_label("Topic").fill("Hello")
    await page.get_by_role("button", name="Book this time").click()
    await expect(page.get_by_role("heading", name="You are booked")).to_be_visible()
    assert errors == [STATUS.format("422 (Unprocessable Entity)")]
    await context.close()


@pytest.mark.parametrize("javascript", [True, False])
async def test_a_time_taken_meanwhile_offers_the_nearest(browser: Browser, artifacts: Path,
                                                         sources, make_config, serve,
                                                         javascript: bool) -> None:
    client, runtime = await started(make_config, sources, serve)
    context = await browser.new_context(timezone_id="UTC", locale="en-GB", viewport=PHONE,
                                        java_script_enabled=javascript)
    page = await context.new_page()
    errors = watch_console(page)
    await page.goto(str(client.make_url(FORM)))
    await page.get_by_label("Your name").fill("Kim Late")
    await page.get_by_label("Your email").fill("kim@example.org")
    await page.get_by_label(re.compile("^Topic")).fill("Pricing")
    # Someone else books the same time first.
    assert (await client.post("/api/v1/pages/intro/bookings",
                              json=guest(start="2026-11-26T09:30:00Z"))).status == 201
    await page.get_by_role("button", name="Book this time").click()

    await expect(page.get_by_role("alert")).to_contain_text(
        "That time was just booked — here are the nearest free times")
    choices = page.get_by_role("radio")
    await expect(choices).to_have_count(4)
    await expect(page.get_by_label("Your name")).to_have_value("Kim Late")
    await expect(page.get_by_label(re.compile("^Topic"))).to_have_value("Pricing")
    if javascript:
        await page.screenshot(path=str(artifacts / "errors-taken.png"), full_page=True)
    await page.get_by_label("Thursday, 26 November 2026, 10:30–11:00 (UTC)").check()
    await page.get_by_role("button", name="Book this time").click()
    await expect(page.get_by_role("heading", name="You are booked")).to_be_visible()
    await expect(page.get_by_text("Thursday, 26 November 2026, 10:30–11:00 (UTC)")
                 ).to_be_visible()
    booking_id = page.url.split("/booking/")[1].split("?")[0]
    booking = await runtime.store.booking(booking_id)
    assert booking is not None and booking.guest_name == "Kim Late"
    assert booking.answers == {"topic": "Pricing"}
    assert errors == [STATUS.format("409 (Conflict)")]
    await context.close()
