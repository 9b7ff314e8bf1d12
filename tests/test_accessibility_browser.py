"""axe-core's accessibility audit of every page of the flow, in real headless Chromium.

axe-core (the npm package, pinned by tests/package-lock.json, installed by
scripts/test) is loaded into each page by the test (``tests/browser.py``'s
``audit``) and must report no "serious" or "critical" violation of WCAG 2.x A/AA
or its best practices; minor and moderate findings are printed. The pages of the
flow: the booking page with a day and its times, the details form sent with
mistakes, the form again when the time was taken meanwhile (the nearest free times
offered), the confirmation (the booking's own page, where it is managed), the
reschedule page with a new time chosen, the cancel confirmation, the cancelled
booking, the host's page and the status page. Every page is audited at a phone's
(390x844) and a desktop's (1366x900) size, light in English and dark in German (the
status page is English only), with JavaScript on (axe runs in the page). The same
booking also works with JavaScript off at both sizes.
Screenshots: test-artifacts/a11y-<page>-<width>-<scheme>-<lang>.png.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from tests.booking_world import guest, started
from tests.browser import audit, audit_context, axe_script, watch_console

ADMIN = "admin-admin-admin-0001"
SIZES = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1366, "height": 900}}
WORDS = {  # what the test clicks and waits for, in each language
    "en": {"booked": "You are booked", "reschedule": "Reschedule",
           "cancel": "Cancel this booking", "yes": "Yes, cancel this booking",
           "cancelled": "This booking is cancelled"},
    "de": {"booked": "Ihre Buchung ist bestätigt", "reschedule": "Verschieben",
           "cancel": "Diese Buchung stornieren", "yes": "Ja, diese Buchung stornieren",
           "cancelled": "Diese Buchung ist storniert"},
}


async def world(make_config: Any, sources: Any, serve: Any) -> Any:
    """The booking world with its host and place shown, and the status page open."""
    return await started(make_config, sources, serve, server={"admin_secret": ADMIN},
                         timezone="Europe/Berlin",
                         video_link="https://meet.jit.si/fbproxy-{random}",
                         calendars={"alex": {"display_name": "Alex Doe"}})


@pytest.mark.parametrize(("size", "scheme", "lang"), [
    ("phone", "light", "en"), ("desktop", "light", "en"),
    ("phone", "dark", "de"), ("desktop", "dark", "de"),
])
async def test_every_page_of_the_flow_passes_axe(
        browser: Browser, artifacts: Path, sources: Any, make_config: Any, serve: Any,
        size: str, scheme: str, lang: str) -> None:
    client, runtime = await world(make_config, sources, serve)
    context = await audit_context(
        browser, viewport=SIZES[size], color_scheme=scheme, timezone_id="Europe/Berlin",
        locale="de-DE" if lang == "de" else "en-GB",  # Accept-Language picks the language
        http_credentials={"username": "admin", "password": ADMIN})  # sent on a 401 only
    page = await context.new_page()
    errors = watch_console(page)
    words = WORDS[lang]
    found: dict[str, list[dict[str, Any]]] = {}

    async def check(name: str) -> None:
        shown = "en" if name == "status" else lang  # the operator's page is English only
        await expect(page.locator("html")).to_have_attribute("lang", shown)
        found[name] = await audit(page, f"{name} ({size}, {scheme}, {shown})")
        await page.screenshot(path=str(artifacts / f"a11y-{name}-{SIZES[size]['width']}"
                                       f"-{scheme}-{shown}.png"), full_page=True)

    # The booking page, a day picked: its times shown.
    await page.goto(str(client.make_url("/book/intro")))
    await page.locator("a.day.open").first.click()
    await expect(page.locator("a.slot").first).to_be_visible()
    # A day without times says so to a screen reader (in text: axe only flags for
    # review an aria-label on a plain span, which screen readers skip).
    await expect(page.locator(".day.closed .visually-hidden").first).to_have_text(
        "Sonntag, 1. November 2026: keine freien Zeiten" if lang == "de"
        else "Sunday, 1 November 2026: no open times")
    await check("booking")

    # A time picked; the details sent empty (the browser's own checks off, so the
    # server's errors show): the form with its errors.
    await page.locator("a.slot").first.click()
    form = page.locator("#booking-form")
    await expect(form).to_be_visible()
    await form.evaluate("form => { form.noValidate = true; }")
    await form.locator("button[type=submit]").click()
    await expect(page.locator("[role=alert], [aria-invalid=true]").first).to_be_visible()
    await check("form-errors")

    # Sent right, but someone else took the time first: the nearest free times offered.
    await page.locator("#name").fill("Sam Guest")
    await page.locator("#email").fill("sam@example.org")
    start = await form.locator("input[name=start]").input_value()
    assert (await client.post("/api/v1/pages/intro/bookings", json=guest(
        start=start, name="Kim Early", email="kim@example.org"))).status == 201
    await form.locator("button[type=submit]").click()
    choices = page.get_by_role("radio")
    await expect(choices.first).to_be_visible()
    await check("taken")

    # One of them picked: the confirmation, where the booking is managed.
    await choices.first.check()
    await page.locator("#booking-form button[type=submit]").click()
    await expect(page.get_by_role("heading", name=words["booked"])).to_be_visible()
    manage_url = page.url
    booking_id = manage_url.split("/booking/")[1].split("?")[0]
    await check("confirmation")

    # Rescheduling, a new time chosen.
    await page.get_by_role("button", name=words["reschedule"]).click()
    await page.locator("a.day.open").last.click()
    await page.locator("a.slot").last.click()
    await expect(page.locator("#move-form")).to_be_visible()
    await check("reschedule")

    # The host's page, from the host's own link.
    booking = await runtime.store.booking(booking_id)
    assert booking is not None
    await page.goto(str(client.make_url(
        f"/booking/{booking_id}/host?secret={booking.host_secret}")))
    await expect(page.locator("form.cancel-confirm")).to_be_visible()
    await check("host")

    # The guest cancels: asked first, then the cancelled booking.
    await page.goto(manage_url)
    await page.get_by_role("button", name=words["cancel"]).click()
    await expect(page.get_by_role("button", name=words["yes"])).to_be_visible()
    await check("cancel")
    await page.get_by_role("button", name=words["yes"]).click()
    await expect(page.get_by_role("heading", name=words["cancelled"])).to_be_visible()
    await check("cancelled")

    # The operator's status page (behind the admin secret), a source failing on it.
    await runtime.store.record_failure(runtime.source_ids["sam"], error="HTTP 401",
                                       now=int(runtime.clock.now().timestamp()),
                                       needs_reauth=True)
    await page.goto(str(client.make_url("/status")))
    await expect(page.locator("figure.heatmap svg").first).to_be_visible()
    await check("status")

    # Chromium logs the errors' answers (422, 409) as failed loads; nothing else may show.
    assert [error for error in errors if "422" not in error and "409" not in error] == []
    assert list(found) == ["booking", "form-errors", "taken", "confirmation", "reschedule", "host",
                           "cancel", "cancelled", "status"]
    await context.close()


async def test_the_audit_fails_on_a_serious_violation(browser: Browser) -> None:
    """The audit itself: a field without a label and faint text fail it, by name."""
    axe_script()  # a missing axe-core fails here, with its own message
    context = await audit_context(browser)
    page = await context.new_page()
    await page.set_content('<!doctype html><html lang="en"><title>t</title><main>'
                           '<p class="faint">Faint</p><input id="x"></main>')
    await page.add_style_tag(content=".faint { color: #ddd; }")
    with pytest.raises(AssertionError) as failed:
        await audit(page, "a bad page")
    assert "critical label" in str(failed.value) or "serious label" in str(failed.value)
    assert "serious color-contrast" in str(failed.value)
    await context.close()


async def book_without_javascript(page: Page, url: str) -> None:
    await page.goto(url)
    await page.locator("a.day.open").first.click()
    await page.locator("a.slot").first.click()
    await page.get_by_label("Your name").fill("Noscript Guest")
    await page.get_by_label("Your email").fill("noscript@example.org")
    await page.get_by_role("button", name="Book this time").click()
    await expect(page.get_by_role("heading", name="You are booked")).to_be_visible()


@pytest.mark.parametrize("size", ["phone", "desktop"])
async def test_the_flow_books_without_javascript(
        browser: Browser, artifacts: Path, sources: Any, make_config: Any, serve: Any,
        size: str) -> None:
    client, runtime = await world(make_config, sources, serve)
    context = await browser.new_context(java_script_enabled=False, viewport=SIZES[size],
                                        timezone_id="Europe/Berlin", locale="en-GB")
    page = await context.new_page()
    await book_without_javascript(page, str(client.make_url("/book/intro")))
    await page.screenshot(path=str(artifacts / f"a11y-nojs-confirmation-{SIZES[size]['width']}"
                                                ".png"), full_page=True)
    booking_id = page.url.split("/booking/")[1].split("?")[0]
    booking = await runtime.store.booking(booking_id)
    assert booking is not None and booking.guest_name == "Noscript Guest"
    await context.close()
