"""Months, days and times changing in place, in real headless Chromium (Debian's).

With JavaScript on, book.js fetches the very URL a month arrow, a day or a time
links to and swaps the calendar, the times and the form in; the URL is pushed, so
Back and Forward step through what the guest saw. A page never reloads in
between: ``window.__marker``, set once, survives every step. On a phone the form
comes into view after a time is picked. Focused headings show no focus ring (the
"stray orange box"), fields focused from the keyboard do. Without JavaScript the
same links are plain links. Screenshots: test-artifacts/pe-*.png.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, expect

from tests.booking_world import guest, started
from tests.browser import watch_console

FOCUS_RING = "rgb(255, 191, 71)"  # book.css's --focus


async def mark(page: Page) -> None:
    await page.evaluate("window.__marker = 1")


async def still_marked(page: Page) -> None:
    """The page was not reloaded since ``mark``."""
    assert await page.evaluate("window.__marker") == 1


async def focused_id(page: Page) -> str:
    return str(await page.evaluate("document.activeElement && document.activeElement.id"))


async def outline_of_focused(page: Page) -> tuple[str, ...]:
    """The focused element's outline: style, width, colour."""
    return tuple(str(value) for value in await page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, s.outlineWidth, s.outlineColor]; })()"))


async def test_months_days_and_times_change_in_place_on_a_phone(
        browser: Browser, artifacts: Path, sources: Any, make_config: Any, serve: Any) -> None:
    client, runtime = await started(make_config, sources, serve)
    context = await browser.new_context(timezone_id="Europe/Berlin", locale="en-US",
                                        viewport={"width": 390, "height": 844})
    page = await context.new_page()
    errors = watch_console(page)
    await page.goto(str(client.make_url("/book/intro")))
    await expect(page.locator(".meta")).to_contain_text("Europe/Berlin")  # detected: one reload
    first_url = page.url
    await expect(page.get_by_role("heading", name="Thursday, 26 November 2026")).to_be_visible()
    await mark(page)

    # A month change: the calendar and the first open day's times, in place.
    await page.get_by_role("link", name="Next month").click()
    await expect(page.get_by_role("heading", name="December 2026", exact=True)).to_be_visible()
    await expect(page.get_by_role("heading", name="Tuesday, 1 December 2026")).to_be_visible()
    assert "month=2026-12" in page.url and "day=" not in page.url
    await still_marked(page)
    await expect(page.locator("#in-place-status")).to_have_text(
        "December 2026. Tuesday, 1 December 2026")
    await expect(page.get_by_role("link", name="Next month")).to_have_count(0)  # the last one
    assert await focused_id(page) == "slots-heading"  # the arrow pressed is gone
    await page.screenshot(path=str(artifacts / "pe-month-phone.png"), full_page=True)

    # A day pick: its times in place, focus on its heading, brought into view.
    await page.get_by_role("link", name=re.compile(r"^Wednesday, 2 December 2026")).click()
    heading = page.get_by_role("heading", name="Wednesday, 2 December 2026")
    await expect(heading).to_be_focused()
    await expect(heading).to_be_in_viewport()
    assert "day=2026-12-02" in page.url and page.url.endswith("#slots-heading")
    await still_marked(page)
    assert (await outline_of_focused(page))[0] == "none"  # no stray focus box
    await expect(page.get_by_role("link", name="10:00", exact=True)).to_be_visible()
    await page.screenshot(path=str(artifacts / "pe-day-phone.png"))

    # Back and Forward step through the same pages, still without a reload.
    await page.go_back()
    await expect(page.get_by_role("heading", name="Tuesday, 1 December 2026")).to_be_visible()
    await expect(page.locator(".day.selected")).to_have_text("1")
    assert "month=2026-12" in page.url and "day=" not in page.url
    await page.go_back()
    await expect(page.get_by_role("heading", name="November 2026", exact=True)).to_be_visible()
    await expect(page.get_by_role("heading", name="Thursday, 26 November 2026")).to_be_visible()
    await expect(page.get_by_role("link", name="10:30", exact=True)).to_be_visible()
    assert page.url == first_url
    await page.go_forward()
    await expect(page.get_by_role("heading", name="Tuesday, 1 December 2026")).to_be_visible()
    await expect(page.locator("#in-place-status")).to_have_text(
        "December 2026. Tuesday, 1 December 2026")
    await still_marked(page)

    # A time picked: the form below the calendar comes into view, its heading focused.
    await page.get_by_role("link", name="11:00", exact=True).click()
    book_heading = page.get_by_role("heading", name="Your details")
    await expect(book_heading).to_be_focused()
    await expect(book_heading).to_be_in_viewport()
    await expect(page.get_by_role("button", name="Book this time")).to_be_in_viewport()
    assert await page.evaluate("window.scrollY") > 0
    assert "start=" in page.url and page.url.endswith("#book-heading")
    assert (await outline_of_focused(page))[0] == "none"
    await still_marked(page)
    await page.screenshot(path=str(artifacts / "pe-form-phone.png"))

    # The keyboard's focus stays plainly visible: the next Tab lands in the name field.
    await page.keyboard.press("Tab")
    assert await focused_id(page) == "name"
    assert await outline_of_focused(page) == ("solid", "3px", FOCUS_RING)
    await page.screenshot(path=str(artifacts / "pe-keyboard-focus.png"))

    # Booking works with the swapped-in form (its CSRF token, its hidden fields).
    await page.get_by_label("Your name").fill("Berta Berlin")
    await page.get_by_label("Your email").fill("berta@example.org")
    await page.get_by_role("button", name="Book this time").click()
    await expect(page.get_by_role("heading", name="You are booked")).to_be_visible()
    await expect(page.get_by_text("Tuesday, 1 December 2026, 11:00–11:30 (Europe/Berlin)")
                 ).to_be_visible()
    booking_id = page.url.split("/booking/")[1].split("?")[0]
    booking = await runtime.store.booking(booking_id)
    assert booking is not None and booking.start == 1796119200  # 2026-12-01T10:00Z
    assert errors == []  # no script error, no CSP violation (connect-src 'self')
    await context.close()


async def test_the_pickers_and_language_links_follow_the_day_shown(
        browser: Browser, sources: Any, make_config: Any, serve: Any) -> None:
    client, _ = await started(make_config, sources, serve)
    context = await browser.new_context(timezone_id="UTC", locale="en-US",
                                        viewport={"width": 1366, "height": 900})
    page = await context.new_page()
    errors = watch_console(page)
    await page.goto(str(client.make_url("/book/intro")))
    await mark(page)
    await page.get_by_role("link", name=re.compile(r"^Monday, 30 November 2026")).click()
    await expect(page.get_by_role("heading", name="Monday, 30 November 2026")).to_be_focused()
    await still_marked(page)
    # On a wide screen the times sit beside the calendar: nothing scrolled.
    assert await page.evaluate("window.scrollY") == 0
    assert "day=2026-11-30" in (await page.get_by_role("link", name="Deutsch")
                                .get_attribute("href") or "")
    await expect(page.locator("form.controls input[name=day]")).to_have_value("2026-11-30")
    # Changing the zone (a full page load, as before) keeps the day shown.
    await page.select_option("#tz", "Asia/Tokyo")
    await expect(page.locator(".meta")).to_contain_text("Asia/Tokyo")
    await expect(page.get_by_role("heading", name="Monday, 30 November 2026")).to_be_visible()
    await expect(page.get_by_role("link", name="18:00", exact=True)).to_be_visible()
    assert errors == []
    await context.close()


async def test_rescheduling_changes_month_and_day_in_place(
        browser: Browser, artifacts: Path, sources: Any, make_config: Any, serve: Any) -> None:
    client, runtime = await started(make_config, sources, serve)
    context = await browser.new_context(timezone_id="Asia/Tokyo", locale="en-US",
                                        viewport={"width": 1366, "height": 900},
                                        reduced_motion="reduce")
    page = await context.new_page()
    errors = watch_console(page)
    await page.goto(str(client.make_url("/book/intro")))
    await expect(page.locator(".meta")).to_contain_text("Asia/Tokyo")
    await page.get_by_role("link", name=re.compile(r"^Friday, 27 November 2026")).click()
    await page.get_by_role("link", name="18:30", exact=True).click()
    await page.get_by_label("Your name").fill("Aiko Tanaka")
    await page.get_by_label("Your email").fill("aiko@example.org")
    await page.get_by_role("button", name="Book this time").click()
    await expect(page.get_by_role("heading", name="You are booked")).to_be_visible()
    booking_id = page.url.split("/booking/")[1].split("?")[0]

    await page.get_by_role("button", name="Reschedule").click()
    await expect(page.get_by_role("heading", name="Move your booking")).to_be_visible()
    await mark(page)
    await page.get_by_role("link", name="Next month").click()
    await expect(page.get_by_role("heading", name="December 2026", exact=True)).to_be_visible()
    assert "/reschedule?" in page.url and "month=2026-12" in page.url
    await page.get_by_role("link", name=re.compile(r"^Wednesday, 2 December 2026")).click()
    await expect(page.get_by_role("heading", name="Wednesday, 2 December 2026")
                 ).to_be_focused()
    await page.go_back()
    await expect(page.get_by_role("heading", name="Tuesday, 1 December 2026")).to_be_visible()
    await page.get_by_role("link", name="20:30", exact=True).click()
    move_heading = page.get_by_role("heading", name="Move to this time")
    await expect(move_heading).to_be_focused()
    await expect(move_heading).to_be_in_viewport()
    assert (await outline_of_focused(page))[0] == "none"  # the stray orange box, gone
    await still_marked(page)
    await page.screenshot(path=str(artifacts / "pe-reschedule-desktop.png"))
    await page.get_by_role("button", name="Move my booking here").click()
    await expect(page.get_by_role("heading", name="You are booked")).to_be_visible()
    await expect(page.locator(".summary")).to_contain_text(
        "Tuesday, 1 December 2026, 20:30–21:00 (Asia/Tokyo)")
    moved = await runtime.store.booking(booking_id)
    assert moved is not None and moved.start == 1796124600  # 2026-12-01T11:30Z
    assert errors == []
    await context.close()


async def test_a_heading_focused_on_load_shows_no_focus_box(
        browser: Browser, artifacts: Path, sources: Any, make_config: Any, serve: Any) -> None:
    client, _ = await started(make_config, sources, serve)
    context = await browser.new_context(timezone_id="UTC", locale="en-US",
                                        viewport={"width": 1366, "height": 900})
    page = await context.new_page()
    # A shared link to a chosen time: the script focuses the form's heading on load.
    await page.goto(str(client.make_url(
        "/book/intro?tz=UTC&duration=30m&month=2026-11&day=2026-11-26"
        "&start=2026-11-26T10%3A00%3A00%2B00%3A00#book-heading")))
    await expect(page.get_by_role("heading", name="Your details")).to_be_focused()
    assert (await outline_of_focused(page))[0] == "none"
    await page.screenshot(path=str(artifacts / "pe-heading-no-focus-box.png"))
    await page.keyboard.press("Tab")
    assert await outline_of_focused(page) == ("solid", "3px", FOCUS_RING)
    await context.close()


async def test_an_error_while_fetching_falls_back_to_the_plain_link(
        browser: Browser, sources: Any, make_config: Any, serve: Any) -> None:
    # Two page loads allowed: the page, one month fetched in place; the third is a 429.
    client, _ = await started(make_config, sources, serve,
                              server={"rate_limit_pages": "2/1h"})
    context = await browser.new_context(timezone_id="UTC", locale="en-US")
    page = await context.new_page()
    await page.goto(str(client.make_url("/book/intro")))
    await mark(page)
    await page.get_by_role("link", name="Next month").click()
    await expect(page.get_by_role("heading", name="December 2026", exact=True)).to_be_visible()
    await still_marked(page)
    await page.get_by_role("link", name=re.compile(r"^Wednesday, 2 December 2026")).click()
    # The guest sees what the plain link shows: the server's own "please wait" page.
    await expect(page.get_by_role("heading", name="Please wait a moment")).to_be_visible()
    assert "day=2026-12-02" in page.url
    assert await page.evaluate("window.__marker") is None  # a real navigation
    await context.close()


async def test_back_to_a_page_a_form_post_made_loads_it_anew(
        browser: Browser, sources: Any, make_config: Any, serve: Any) -> None:
    """A slot taken meanwhile answers the post with the form again, at /book/intro
    (no ?tz=). A month changed in place from there, Back fetches /book/intro, which
    is in the page's zone (UTC), not the guest's: that is not swapped under the
    guest's zone picker; the page is loaded anew by GET (never posted again)."""
    client, _ = await started(make_config, sources, serve)
    context = await browser.new_context(timezone_id="Europe/Berlin", locale="en-US")
    page = await context.new_page()
    errors = watch_console(page)
    await page.goto(str(client.make_url("/book/intro")))
    await expect(page.locator(".meta")).to_contain_text("Europe/Berlin")
    await page.get_by_role("link", name="10:30", exact=True).click()  # 09:30Z
    await page.get_by_label("Your name").fill("Late Guest")
    await page.get_by_label("Your email").fill("late@example.org")
    taken = await client.post("/api/v1/pages/intro/bookings",
                              json=guest(start="2026-11-26T09:30:00Z"))
    assert taken.status == 201
    await page.get_by_role("button", name="Book this time").click()
    await expect(page.get_by_role("link", name="10:30", exact=True)).to_have_count(0)
    assert page.url == str(client.make_url("/book/intro"))
    await mark(page)
    posts: list[str] = []
    page.on("request", lambda request: posts.append(request.url)
            if request.method == "POST" else None)
    await page.get_by_role("link", name="Next month").click()
    await expect(page.get_by_role("heading", name="December 2026", exact=True)).to_be_visible()
    await still_marked(page)
    await page.go_back()
    await expect(page.get_by_role("heading", name="November 2026", exact=True)).to_be_visible()
    await expect(page.locator(".meta")).to_contain_text("Europe/Berlin")  # detected again
    await expect(page.get_by_role("link", name="11:00", exact=True)).to_be_visible()
    assert await page.evaluate("window.__marker") is None
    bookings = await client.get("/api/v1/pages/intro/slots?start=2026-11-26&end=2026-11-27")
    assert "2026-11-26T10:00:00Z" in [s["start"] for s in (await bookings.json())["slots"]]
    assert posts == []
    assert [e for e in errors if "409 (Conflict)" not in e] == []  # only the post's answer
    await context.close()


async def test_without_javascript_the_links_are_plain_links(
        browser: Browser, sources: Any, make_config: Any, serve: Any) -> None:
    client, _ = await started(make_config, sources, serve)
    context = await browser.new_context(java_script_enabled=False, timezone_id="UTC")
    page = await context.new_page()
    await page.goto(str(client.make_url("/book/intro?tz=UTC")))
    await page.get_by_role("link", name="Next month").click()
    await expect(page.get_by_role("heading", name="December 2026", exact=True)).to_be_visible()
    await page.get_by_role("link", name=re.compile(r"^Wednesday, 2 December 2026")).click()
    await expect(page.get_by_role("heading", name="Wednesday, 2 December 2026")).to_be_visible()
    await page.go_back()
    await expect(page.get_by_role("heading", name="Tuesday, 1 December 2026")).to_be_visible()
    await page.go_back()
    await expect(page.get_by_role("heading", name="November 2026", exact=True)).to_be_visible()
    await expect(page.locator("#in-place-status")).to_have_count(0)
    await context.close()


async def test_the_pages_allow_fetching_their_own_origin_only(
        sources: Any, make_config: Any, serve: Any) -> None:
    client, _ = await started(make_config, sources, serve)
    for path in ("/book/intro?tz=UTC", "/book/intro?tz=UTC&embed=1"):
        response = await client.get(path)
        policy = response.headers["Content-Security-Policy"]
        directives = {part.split()[0]: part.strip() for part in policy.split(";")}
        assert directives["connect-src"] == "connect-src 'self'"
        assert directives["script-src"] == "script-src 'self'"
        assert directives["default-src"] == "default-src 'none'"
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
