"""The guest's booking form over HTTP: free slots only, CSRF, escaping, cancel, .ics."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape
from typing import Any

import pytest
from icalendar import Calendar

from tests.booking_world import guest, offered, started
from tests.conftest import NOW

FIRST_OPEN = "2026-11-26T09:30:00+00:00"  # alex is busy 09:00-09:30 on the 26th


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', html)
    assert found, f"no hidden field {name}"
    return unescape(found.group(1))


def slot_labels(html: str) -> list[str]:
    return re.findall(r'class="slot[^"]*" href="[^"]*"[^>]*>(\d\d:\d\d)</a>', html)


async def form_for(client: Any, start: str = FIRST_OPEN, tz: str = "UTC") -> str:
    response = await client.get("/book/intro", params={"tz": tz, "start": start,
                                                      "day": start[:10]})
    assert response.status == 200
    return await response.text()


async def post_form(client: Any, html: str, **fields: str) -> Any:
    data = {name: hidden(html, name) for name in ("csrf", "start", "duration", "tz")}
    data.update({"name": "Sam Guest", "email": "sam@example.org", **fields})
    return await client.post("/book/intro", data=data, allow_redirects=False)


async def test_the_page_shows_free_slots_and_nothing_else(sources, make_config, serve) -> None:
    client, _ = await started(make_config, sources, serve)
    response = await client.get("/book/intro?tz=UTC")
    html = await response.text()
    assert response.status == 200
    # Wednesday's hours are past the notice; Thursday is the first open day.
    assert "Thursday, 26 November 2026" in html
    assert slot_labels(html) == ["09:30", "10:00", "10:30", "11:00", "11:30"]
    assert "Secret meeting" not in html and "a1" not in re.sub(r"[a-f0-9]{8,}", "", html)
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    assert "fbproxy_csrf" in response.cookies
    cookie = response.cookies["fbproxy_csrf"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert 'aria-current="date"' in html and "<label for=\"tz\">" in html


async def test_the_guests_zone_changes_only_how_times_read(sources, make_config,
                                                          serve) -> None:
    client, _ = await started(make_config, sources, serve)
    html = await (await client.get("/book/intro?tz=Asia/Tokyo&day=2026-11-26")).text()
    # 09:30 UTC is 18:30 in Tokyo, the same instant.
    assert slot_labels(html)[:2] == ["18:30", "19:00"]
    assert "start=2026-11-26T18%3A30%3A00%2B09%3A00" in html
    assert "times shown in Asia/Tokyo" in html


@pytest.mark.parametrize(("query", "notice"), [
    ("tz=Mars/Olympus", "is not a time zone we know"),
    ("tz=../../etc/passwd", "is not a time zone we know"),
    ("duration=45m", "That length is not offered"),
    ("month=2026-13", "not one we understand"),
    ("day=yesterday", "not one we understand"),
    (f"start={NOW.isoformat()}", "no longer free"),
])
async def test_bad_choices_fall_back_and_say_so(sources, make_config, serve, query: str,
                                               notice: str) -> None:
    client, _ = await started(make_config, sources, serve)
    response = await client.get(f"/book/intro?{query}")
    assert response.status == 200
    assert notice in await response.text()


async def test_booking_through_the_form(sources, make_config, serve) -> None:
    client, runtime = await started(make_config, sources, serve)
    html = await form_for(client, tz="Europe/Berlin",
                          start="2026-11-26T10:30:00+01:00")
    assert "Thursday, 26 November 2026, 10:30–11:00 (Europe/Berlin)" in html
    response = await post_form(client, html, **{"answer.topic": "Line one\nline two"})
    assert response.status == 303, await response.text()
    manage = response.headers["Location"]
    assert manage.startswith("/booking/bk_") and "?secret=" in manage
    assert "2026-11-26T09:30:00Z" not in await offered(client)

    page = await client.get(manage)
    text = await page.text()
    assert "You are booked" in text and "10:30–11:00 (Europe/Berlin)" in text
    assert page.headers["Cache-Control"] == "no-store"
    booking = await runtime.store.booking(manage.split("/")[2].split("?")[0])
    assert booking is not None and booking.guest_timezone == "Europe/Berlin"
    assert booking.answers == {"topic": "Line one\nline two"}

    invite = await client.get(re.search(r'href="(/booking/[^"]+invite\.ics[^"]*)"', text)
                              .group(1).replace("&amp;", "&"))
    assert invite.status == 200 and invite.content_type == "text/calendar"
    [vevent] = Calendar.from_ical(await invite.text()).walk("VEVENT")
    assert vevent.decoded("DTSTART").isoformat() == "2026-11-26T09:30:00+00:00"
    assert str(vevent["STATUS"]) == "CONFIRMED"
    assert str(vevent["URL"]).endswith(manage)


async def test_the_form_needs_its_csrf_token(sources, make_config, serve) -> None:
    client, _ = await started(make_config, sources, serve)
    html = await form_for(client)
    forged = await post_form(client, html, csrf="x" * 43)
    assert forged.status == 403 and "expired" in await forged.text()
    foreign = await client.post("/book/intro", data={"csrf": hidden(html, "csrf")},
                                headers={"Origin": "https://evil.example"})
    assert foreign.status == 403 and "another site" in await foreign.text()
    client.session.cookie_jar.clear()
    no_cookie = await post_form(client, html)
    assert no_cookie.status == 403
    assert FIRST_OPEN.replace("+00:00", "Z") in await offered(client), "nothing was booked"


async def test_hostile_text_is_refused_or_escaped(sources, make_config, serve) -> None:
    client, runtime = await started(make_config, sources, serve)
    html = await form_for(client)
    crlf = await post_form(client, html, name="Sam\r\nX-INJECT:1")
    body = await crlf.text()
    assert crlf.status == 422 and "one line" in body and 'role="alert"' in body
    assert 'value="Sam' in body, "the guest's details are kept for a retry"

    script = "<script>alert(1)</script>"
    ok = await post_form(client, html, name=script, **{
        "answer.topic": "END:VEVENT\nBEGIN:VEVENT\nX-EVIL:1 " + script})
    assert ok.status == 303
    page = await (await client.get(ok.headers["Location"])).text()
    assert script not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    invite = await (await client.get(ok.headers["Location"].replace(
        "?secret", "/invite.ics?secret"))).text()
    assert len(Calendar.from_ical(invite).walk("VEVENT")) == 1 and "X-EVIL" not in invite
    assert len(await runtime.store.booking_starts("alex", 0, 2**31)) == 1


async def test_a_slot_taken_meanwhile_is_a_409_page_that_keeps_the_details(
        sources, make_config, serve) -> None:
    client, _ = await started(make_config, sources, serve)
    html = await form_for(client)
    taken = await client.post("/api/v1/pages/intro/bookings",
                              json=guest(start="2026-11-26T09:30:00Z"))
    assert taken.status == 201
    response = await post_form(client, html, name="Kim Late")
    body = await response.text()
    assert response.status == 409 and "That time was just booked" in body
    assert "09:30" not in slot_labels(body) and "10:00" in slot_labels(body)
    assert 'value="Kim Late"' in body and 'value="sam@example.org"' in body


async def test_cancel_is_a_post_from_the_bookings_page(sources, make_config, serve) -> None:
    client, _ = await started(make_config, sources, serve)
    response = await post_form(client, await form_for(client))
    manage = response.headers["Location"]
    for _ in range(2):  # opening (or prefetching) the link changes nothing
        page = await (await client.get(manage)).text()
        assert "You are booked" in page
    assert "2026-11-26T09:30:00Z" not in await offered(client)
    wrong = await client.get(manage.rsplit("=", 1)[0] + "=guess")
    assert wrong.status == 404 and "<html" in await wrong.text()

    # The button asks first (a GET: opening it changes nothing), then the post cancels.
    assert 'action="/booking/' in page and "Reschedule" in page
    confirm = await (await client.get(manage.split("?")[0] + "/cancel",
                                      params={"secret": hidden(page, "secret")})).text()
    assert "Cancel this booking?" in confirm and 'name="reason"' in confirm
    assert "2026-11-26T09:30:00Z" not in await offered(client)
    cancelled = await client.post(
        manage.split("?")[0] + "/cancel", allow_redirects=False,
        data={"csrf": hidden(confirm, "csrf"), "secret": hidden(confirm, "secret"),
              "reason": "Something came up"})
    assert cancelled.status == 303
    page = await (await client.get(cancelled.headers["Location"])).text()
    assert "This booking is cancelled" in page and "Cancel this booking" not in page
    assert "Something came up" in page
    assert "2026-11-26T09:30:00Z" in await offered(client)
    invite = await (await client.get(manage.replace("?secret", "/invite.ics?secret"))).text()
    assert "STATUS:CANCELLED" in invite


async def test_a_started_booking_cannot_be_cancelled(sources, make_config, serve,
                                                     clock) -> None:
    client, _ = await started(make_config, sources, serve)
    booking = await (await client.post("/api/v1/pages/intro/bookings", json=guest())).json()
    clock.set(NOW + timedelta(days=1))  # Thursday 12:00, after the 10:00 slot
    path = booking["cancel_url"].split("127.0.0.1:8080", 1)[1]
    response = await client.post(path)
    assert response.status == 409 and "already started" in (await response.json())["error"]
    manage = booking["manage_url"].split("127.0.0.1:8080", 1)[1]
    page = await (await client.get(manage)).text()
    assert "can no longer be cancelled" in page and "Cancel this booking" not in page


async def test_a_megabyte_form_is_refused_with_a_page(sources, make_config, serve) -> None:
    client, _ = await started(make_config, sources, serve)
    response = await client.post("/book/intro", data={"name": "x" * 1_000_000})
    assert response.status == 413 and "<html" in await response.text()


async def test_unknown_page_and_static_files(sources, make_config, serve) -> None:
    client, _ = await started(make_config, sources, serve)
    missing = await client.get("/book/nope")
    assert missing.status == 404 and "Not found" in await missing.text()
    html = await (await client.get("/book/intro")).text()
    script = re.search(r'src="(/static/book\.js\?v=\w+)"', html)
    assert script is not None
    static = await client.get(script.group(1))
    assert static.status == 200 and "immutable" in static.headers["Cache-Control"]
    assert (await client.get("/static/../form.py")).status == 404
