"""The booking's own page in real headless Chromium (Debian's), driven by Playwright.

A guest whose browser is in Tokyo (the page's zone is UTC) books on a phone, lands
on the manage page, reschedules to another day and time chosen in their zone, then
cancels with a reason; mail really goes out through a real SMTP server (aiosmtpd)
after each step: the invitation, its update (same UID, higher SEQUENCE, the new
start) and the CANCEL, and the host's cancellation notice carries the reason. The
pages are screenshotted into test-artifacts/ (or $FBPROXY_ARTIFACTS). The same
reschedule also works with JavaScript off.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, expect

from server.booking.invitation import guest_uid
from tests.booking_world import started
from tests.browser import watch_console
from tests.mailbox import Mailbox, Received, mail_table

GUEST = "aiko@example.org"
HOST = "alex@hosts.example.org"
BOOKED = "Friday, 27 November 2026, 18:30–19:00 (Asia/Tokyo)"  # 09:30Z
MOVED = "Tuesday, 1 December 2026, 20:30–21:00 (Asia/Tokyo)"  # 11:30Z
BOOKED_AT, MOVED_AT = 1795771800, 1796124600
REASON = "Sorry, a clash with <b>markup</b> & all"


def vevent(message: Received) -> Any:
    [event] = message.calendar().walk("VEVENT")
    return event


async def book_in_tokyo(page: Page, url: str) -> str:
    """Books Friday 18:30 Tokyo through the form (zone detected); the booking's id."""
    await page.goto(url)
    await expect(page.locator(".meta")).to_contain_text("Asia/Tokyo")
    await page.get_by_role("link", name=re.compile(r"^Friday, 27 November 2026")).click()
    await page.get_by_role("link", name="18:30", exact=True).click()
    await expect(page.get_by_text(BOOKED)).to_be_visible()
    await page.get_by_label("Your name").fill("Aiko Tanaka")
    await page.get_by_label("Your email").fill(GUEST)
    await page.get_by_role("button", name="Book this time").click()
    await expect(page.get_by_role("heading", name="You are booked")).to_be_visible()
    return page.url.split("/booking/")[1].split("?")[0]


async def test_a_guest_reschedules_and_cancels_in_another_time_zone(
        browser: Browser, artifacts: Path, sources: Any, make_config: Any, serve: Any,
        mailbox: Mailbox) -> None:
    client, runtime = await started(make_config, sources, serve, mail=mail_table(mailbox))
    context = await browser.new_context(timezone_id="Asia/Tokyo", locale="en-US",
                                        viewport={"width": 390, "height": 844})  # a phone
    page = await context.new_page()
    errors = watch_console(page)

    # Booked: the invitation goes out.
    booking_id = await book_in_tokyo(page, str(client.make_url("/book/intro")))
    manage_url = page.url
    await expect(page.get_by_text(BOOKED)).to_be_visible()
    assert await runtime.mailer.run_once() == 2  # the guest's invitation, the host's notice
    [invite] = mailbox.to(GUEST)
    assert str(invite.calendar()["METHOD"]) == "REQUEST"
    first = vevent(invite)
    assert str(first["UID"]) == guest_uid(booking_id)
    assert int(first["SEQUENCE"]) == 0
    assert first.decoded("DTSTART").isoformat() == "2026-11-27T09:30:00+00:00"

    # Reschedule: the month again, in the guest's zone, on their booked day.
    await page.get_by_role("button", name="Reschedule").click()
    await expect(page.get_by_role("heading", name="Move your booking")).to_be_visible()
    await expect(page.locator(".description")).to_contain_text(f"now {BOOKED}")
    await expect(page.locator(".meta")).to_contain_text("Asia/Tokyo")
    await expect(page.get_by_role("heading", name="Friday, 27 November 2026")).to_be_visible()
    # Another day, in the next month; its times are 18:00-21:00 in Tokyo.
    await page.get_by_role("link", name="Next month").click()
    await expect(page.get_by_role("heading", name="December 2026", exact=True)).to_be_visible()
    await page.get_by_role("link", name=re.compile(r"^Tuesday, 1 December 2026")).click()
    await expect(page.get_by_role("heading", name="Tuesday, 1 December 2026")).to_be_visible()
    slot = page.get_by_role("link", name="20:30", exact=True)
    await slot.focus()
    await page.keyboard.press("Enter")  # the keyboard, as a guest without a mouse
    await expect(page.get_by_role("heading", name="Move to this time")).to_be_visible()
    await expect(page.locator("#book .when")).to_have_text(MOVED)
    await page.screenshot(path=str(artifacts / "manage-reschedule.png"), full_page=True)
    await page.get_by_role("button", name="Move my booking here").click()

    # Back on the booking's page, at the new time in the guest's zone.
    await expect(page.get_by_role("heading", name="You are booked")).to_be_visible()
    assert page.url.split("#")[0] == manage_url
    await expect(page.locator(".summary")).to_contain_text(MOVED)
    await expect(page.get_by_text(BOOKED)).to_have_count(0)
    await page.screenshot(path=str(artifacts / "manage-moved.png"), full_page=True)
    moved = await runtime.store.booking(booking_id)
    assert moved is not None and moved.status == "confirmed"
    assert (moved.start, moved.end, moved.sequence) == (MOVED_AT, MOVED_AT + 1800, 1)
    assert moved.guest_timezone == "Asia/Tokyo"
    assert await runtime.mailer.run_once() == 2  # the guest's update, the host's notice
    update = mailbox.to(GUEST)[-1]
    assert str(update.calendar()["METHOD"]) == "REQUEST"
    event = vevent(update)
    assert str(event["UID"]) == str(first["UID"])
    assert int(event["SEQUENCE"]) > int(first["SEQUENCE"])
    assert event.decoded("DTSTART").isoformat() == "2026-12-01T11:30:00+00:00"
    assert MOVED.replace(" (Asia/Tokyo)", "") in update.text()
    assert "moved their booking" in mailbox.to(HOST)[-1].text()

    # Cancel: asked first, with a reason (markup in it stays text).
    await page.get_by_role("button", name="Cancel this booking").click()
    await expect(page.get_by_role("heading", name="Cancel this booking?")).to_be_visible()
    await expect(page.locator(".summary")).to_contain_text(MOVED)
    await page.get_by_label(re.compile("^Reason")).fill(REASON)
    await page.screenshot(path=str(artifacts / "manage-cancel-confirm.png"), full_page=True)
    await page.get_by_role("button", name="Yes, cancel this booking").click()
    await expect(page.get_by_role("heading", name="This booking is cancelled")).to_be_visible()
    reason = page.locator(".summary .reason")
    await expect(reason).to_have_text(REASON)  # shown as typed, escaped
    await expect(reason.locator("b")).to_have_count(0)
    await expect(page.get_by_role("button", name="Reschedule")).to_have_count(0)
    await expect(page.get_by_role("button", name="Cancel this booking")).to_have_count(0)
    await page.screenshot(path=str(artifacts / "manage-cancelled.png"), full_page=True)
    assert errors == []

    cancelled = await runtime.store.booking(booking_id)
    assert cancelled is not None and cancelled.status == "cancelled"
    assert (cancelled.start, cancelled.sequence) == (MOVED_AT, 2)
    assert (cancelled.cancel_reason, cancelled.cancelled_by) == (REASON, "guest")
    assert await runtime.mailer.run_once() == 2  # the guest's CANCEL, the host's notice
    invite_again, update_again, cancel = mailbox.to(GUEST)
    assert (invite_again, update_again) == (invite, update)
    assert str(cancel.calendar()["METHOD"]) == "CANCEL"
    gone = vevent(cancel)
    assert str(gone["UID"]) == str(first["UID"])
    assert int(gone["SEQUENCE"]) > int(event["SEQUENCE"])
    assert gone.decoded("DTSTART").isoformat() == "2026-12-01T11:30:00+00:00"
    notice = mailbox.to(HOST)[-1]
    assert notice.message["Subject"].startswith("Cancelled:")
    assert "Aiko Tanaka cancelled their booking" in notice.text()
    assert f"Reason: {REASON}" in notice.text()
    assert "Sorry, a clash with &lt;b&gt;markup&lt;/b&gt; &amp; all" in notice.html()
    assert "<b>markup</b>" not in notice.html()
    assert await runtime.mailer.run_once() == 0
    await context.close()


async def test_rescheduling_works_without_javascript(
        browser: Browser, sources: Any, make_config: Any, serve: Any, mailbox: Mailbox) -> None:
    client, runtime = await started(make_config, sources, serve, mail=mail_table(mailbox))
    context = await browser.new_context(java_script_enabled=False, timezone_id="Asia/Tokyo")
    page = await context.new_page()
    # No detection without JS: the zone is chosen with the button.
    await page.goto(str(client.make_url("/book/intro")))
    await page.select_option("#tz", "Asia/Tokyo")
    await page.get_by_role("button", name="Show times").click()
    booking_id = await book_in_tokyo(page, page.url)

    await page.get_by_role("button", name="Reschedule").click()
    await expect(page.locator(".meta")).to_contain_text("Asia/Tokyo")
    await page.get_by_role("link", name=re.compile(r"^Monday, 30 November 2026")).click()
    await page.get_by_role("link", name="19:00", exact=True).click()
    await page.get_by_role("button", name="Move my booking here").click()
    await expect(page.get_by_role("heading", name="You are booked")).to_be_visible()
    await expect(page.locator(".summary")).to_contain_text(
        "Monday, 30 November 2026, 19:00–19:30 (Asia/Tokyo)")
    moved = await runtime.store.booking(booking_id)
    assert moved is not None
    assert (moved.start, moved.sequence) == (BOOKED_AT + 3 * 86400 + 1800, 1)  # 10:00Z
    await runtime.mailer.run_once()
    invite, update = mailbox.to(GUEST)
    assert str(vevent(update)["UID"]) == str(vevent(invite)["UID"])
    assert vevent(update).decoded("DTSTART").isoformat() == "2026-11-30T10:00:00+00:00"
    await context.close()
