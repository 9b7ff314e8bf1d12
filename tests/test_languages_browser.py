"""The booking flow in German in real headless Chromium (Debian's), on a phone.

A guest whose browser asks for Swiss German (Accept-Language from the browser's
locale) gets the German page, books, reads the German confirmation, switches to
French and back with the page's links, without JavaScript too. Screenshots go to
test-artifacts/lang-de-*.png (or $FBPROXY_ARTIFACTS).
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Browser, expect

from tests.booking_world import started
from tests.browser import watch_console


async def test_a_guest_books_in_german_on_a_phone(browser: Browser, artifacts: Path, sources,
                                                  make_config, serve) -> None:
    client, runtime = await started(make_config, sources, serve)
    context = await browser.new_context(locale="de-CH", timezone_id="Europe/Berlin",
                                        viewport={"width": 390, "height": 844})
    page = await context.new_page()
    errors = watch_console(page)
    await page.goto(str(client.make_url("/book/intro")))
    await expect(page.locator("html")).to_have_attribute("lang", "de")
    await expect(page.locator(".meta")).to_contain_text("Zeiten in Europe/Berlin")
    await expect(page.get_by_label("Ihre Zeitzone")).to_be_visible()
    await expect(page.locator("#month-heading")).to_have_text("November 2026")
    await expect(page.locator("thead abbr").first).to_have_text("Mo.")

    await page.get_by_role("link", name=re.compile(r"^Freitag, 27\. November 2026")).click()
    await expect(page.get_by_role("heading", name="Freitag, 27. November 2026")).to_be_visible()
    await page.get_by_role("link", name="10:30", exact=True).click()
    await expect(page.get_by_role("heading", name="Ihre Angaben")).to_be_visible()
    await expect(page.get_by_text("Freitag, 27. November 2026, 10:30–11:00 (Europe/Berlin)")
                 ).to_be_visible()
    await page.get_by_label("Ihr Name").fill("Jonas Müller")
    await page.get_by_label("Ihre E-Mail-Adresse").fill("jonas@example.org")
    await page.get_by_label(re.compile("^Topic")).fill("Planung")
    await page.screenshot(path=str(artifacts / "lang-de-form.png"), full_page=True)
    await page.get_by_role("button", name="Diese Zeit buchen").click()

    await expect(page.get_by_role("heading", name="Ihre Buchung ist bestätigt")).to_be_visible()
    await expect(page.get_by_text("Freitag, 27. November 2026, 10:30–11:00 (Europe/Berlin)")
                 ).to_be_visible()
    await page.screenshot(path=str(artifacts / "lang-de-confirmation.png"), full_page=True)
    booking_id = page.url.split("/booking/")[1].split("?")[0]
    booking = await runtime.store.booking(booking_id)
    assert booking is not None and booking.guest_language == "de"

    # The switch: French, kept into the cancel confirmation; then German again.
    await page.get_by_role("link", name="Français").click()
    await expect(page.get_by_role("heading", name="Votre réservation est confirmée")
                 ).to_be_visible()
    await page.get_by_role("button", name="Annuler cette réservation").click()
    await expect(page.get_by_role("heading", name="Annuler cette réservation ?")).to_be_visible()
    assert "lang=fr" in page.url
    await page.get_by_role("link", name="Deutsch").click()
    await expect(page.get_by_role("heading", name="Diese Buchung stornieren?")).to_be_visible()
    await page.screenshot(path=str(artifacts / "lang-de-cancel.png"), full_page=True)
    await page.get_by_role("button", name="Ja, diese Buchung stornieren").click()
    await expect(page.get_by_role("heading", name="Diese Buchung ist storniert")).to_be_visible()
    assert errors == []
    await context.close()


async def test_the_switch_works_without_javascript(browser: Browser, sources, make_config,
                                                   serve) -> None:
    client, _ = await started(make_config, sources, serve)
    context = await browser.new_context(java_script_enabled=False, locale="en-US")
    page = await context.new_page()
    await page.goto(str(client.make_url("/book/intro")))
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await page.get_by_role("link", name="Español").click()
    await expect(page.get_by_label("Su zona horaria")).to_be_visible()
    # The zone form (a GET form) keeps the language.
    await page.select_option("#tz", "Europe/Madrid")
    await page.get_by_role("button", name="Mostrar horarios").click()
    await expect(page.locator(".meta")).to_contain_text("horarios en Europe/Madrid")
    assert "lang=es" in page.url
    await page.get_by_role("link", name="11:00", exact=True).click()
    await page.get_by_label("Su nombre").fill("Lucía")
    await page.get_by_label("Su correo electrónico").fill("lucia@example.org")
    await page.get_by_role("button", name="Reservar esta hora").click()
    await expect(page.get_by_role("heading", name="Su reserva está confirmada")).to_be_visible()
    await context.close()
