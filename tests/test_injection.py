"""HTML and iCalendar injection, tried on every input and checked in every output."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

from icalendar import Calendar

from adapters.caldav import render_hold
from server.booking.holds import _hold, hold_fields
from server.store import OutboxRow
from tests.conftest import ics
from tests.mailbox import Mailbox, mail_table

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
ICAL = "END:VEVENT\nBEGIN:VEVENT\nX-EVIL:1\nUID:evil"
SECRET = "s3cret-s3cret-s3cret-0001"
ADMIN = "admin-admin-admin-0001"


def hostile_feed() -> str:
    body = "\n".join([
        "UID:host1", "DTSTAMP:20260101T000000Z", "DTSTART:20261126T090000Z",
        "DTEND:20261126T093000Z", f"SUMMARY:{SCRIPT} X-EVIL\\:1",
        f"DESCRIPTION:{IMG}\\nEND:VEVENT\\nBEGIN:VEVENT", f"LOCATION:{SCRIPT}"])
    return ics(body)


def assert_clean_ics(text: str, *, events: int | None = None,
                     upstream_free: bool = False) -> None:
    """Parses; no injected property or component. Text fields may hold any text."""
    calendar = Calendar.from_ical(text)
    for component in calendar.walk():
        assert "X-EVIL" not in component, component
        assert str(component.get("UID", "")) != "evil"
    if upstream_free:  # a feed: nothing an upstream event said
        assert "onerror" not in text and "script" not in text
    if events is not None:
        assert len(calendar.walk("VEVENT")) == events


def assert_clean_html(text: str) -> None:
    assert SCRIPT not in text and IMG not in text and "<img" not in text
    assert not re.search(r"<script(?![^>]*src=\"/static/)", text), "only our own script"


async def test_injection_everywhere(tmp_path: Path, make_config: Any, serve: Any,
                                    mailbox: Mailbox) -> None:
    (tmp_path / "work.ics").write_text(hostile_feed())
    page = {"slug": "intro", "title": f"Intro {SCRIPT}", "description": f"{IMG} END:VEVENT",
            "hosts": ["me"], "duration": "30m", "timezone": "UTC", "minimum_notice": "1h",
            "hours": {d: ["09:00-12:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
            "hold_title": "{title}: {guest_name}",
            "questions": [{"name": "topic", "label": f"Topic {SCRIPT}", "kind": "textarea"}]}
    config = make_config([{"name": "work", "kind": "ics", "url": "work.ics"}],
                         booking_pages=[page], admin_secret=ADMIN,
                         mail=mail_table(mailbox, **{"from": f'"{SCRIPT}" <b@example.org>'}))
    client, runtime = await serve(config)
    await runtime.sync.run_all_once()

    booking = await (await client.post("/api/v1/pages/intro/bookings", json={
        "start": "2026-11-26T10:00:00Z", "name": IMG, "email": "sam@example.org",
        "answers": {"topic": ICAL + SCRIPT}})).json()
    manage = booking["manage_url"].split("8080", 1)[1]

    # iCalendar outputs: parse, no injected property, no upstream text.
    assert_clean_ics(await (await client.get(f"/feeds/{SECRET}/busy.ics")).text(), events=2,
                     upstream_free=True)
    assert_clean_ics(await (await client.get(f"/feeds/{SECRET}/freebusy.ics")).text(),
                     upstream_free=True)
    assert_clean_ics(await (await client.get(manage.replace("?secret",
                                                            "/invite.ics?secret"))).text(),
                     events=1)
    # JSON outputs.
    api = await (await client.get("/api/v1/freebusy?start=2026-11-26&end=2026-11-27",
                                  headers={"Authorization": f"Bearer {SECRET}"})).text()
    assert "script" not in api and "onerror" not in api
    # CalDAV outputs.
    basic = {"Authorization": "Basic " + base64.b64encode(f"me:{SECRET}".encode()).decode(),
             "Depth": "1"}
    report = await client.request("REPORT", "/caldav/calendars/me/busy/", headers=basic, data=(
        '<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop>'
        '<C:calendar-data/></D:prop><C:filter><C:comp-filter name="VCALENDAR"/></C:filter>'
        "</C:calendar-query>"))
    dav = await report.text()
    assert report.status == 207 and "script" not in dav and "X-EVIL" not in dav
    # HTML outputs: every guest and config text escaped (the booking's own pages too:
    # moving it, the cancel confirmation, the host's page).
    stored = await runtime.store.booking(booking["id"])
    assert stored is not None
    booking_pages = (manage.replace("?secret", "/reschedule?secret") + "&day=2026-11-26"
                     "&start=2026-11-26T10:30:00%2B00:00",
                     manage.replace("?secret", "/cancel?secret"),
                     f"/booking/{stored.id}/host?secret={stored.host_secret}")
    for path in ("/book/intro?start=2026-11-26T10:30:00%2B00:00&day=2026-11-26", manage,
                 *booking_pages):
        response = await client.get(path)
        assert response.status == 200, path
        html = await response.text()
        assert_clean_html(html)
    html = await (await client.get(manage)).text()
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    form = await (await client.get("/book/intro?start=2026-11-26T10:30:00%2B00:00"
                                   "&day=2026-11-26")).text()
    assert "Topic &lt;script&gt;" in form and "Intro &lt;script&gt;" in form
    status = await (await client.get("/status", headers={"Authorization": f"Bearer {ADMIN}"})
                    ).text()
    assert_clean_html(status)
    # A hold as the host's calendar would get it (same fields the worker sends).
    fields = hold_fields(config.booking_page("intro"), stored, "me")

    hold = _hold(OutboxRow(stored.id, "me", "write", "dav", None, json.dumps(fields), 0))
    assert_clean_ics(render_hold(hold).decode() if isinstance(render_hold(hold), bytes)
                     else render_hold(hold), events=1)

    # Mail: the guest's invitation, the host's notice and the cancellation, as sent
    # through a real SMTP server; nothing adds a header, recipient, element or property.
    await client.post(booking["cancel_url"].split("8080", 1)[1], json={"reason": ICAL + IMG})
    assert await runtime.mailer.run_once() == 4
    for received in mailbox.messages:
        assert len(received.envelope_to) == 1
        header = received.raw.split(b"\r\n\r\n", 1)[0].decode()
        assert "X-EVIL" not in header and "BEGIN:VEVENT" not in header
        assert_clean_html(received.html())
        if received.part("text/calendar") is not None:
            assert_clean_ics(received.part("text/calendar").get_content(), events=1)
    # The host (no email of its own: the [mail] sender) reads the guest's name escaped.
    notices = mailbox.to("b@example.org")
    assert len(notices) == 2
    assert all("&lt;img src=x onerror=alert(1)&gt;" in m.html() for m in notices)


async def test_hostile_host_name_and_location_are_escaped(tmp_path: Path, make_config: Any,
                                                          serve: Any) -> None:
    """A host's display_name and a page's location are config text: shown escaped on the
    booking page and the guest's booking page, never as markup."""
    (tmp_path / "work.ics").write_text(ics())
    calendars = [{"name": "me", "sources": ["work"], "secret": SECRET,
                  "display_name": f"Alex {SCRIPT}"}]
    pages = [{"slug": slug, "title": "Intro", "hosts": ["me"], "duration": "30m",
              "timezone": "UTC", "minimum_notice": "1h", "location": location,
              "hours": {d: ["09:00-12:00"] for d in ("mon", "tue", "wed", "thu", "fri")}}
             for slug, location in (("text", f"{IMG} \" onmouseover=alert(1) x=\""),
                                    ("address", f"address:{SCRIPT} Main St"))]
    client, runtime = await serve(make_config([{"name": "work", "kind": "ics",
                                                "url": "work.ics"}], calendars,
                                              booking_pages=pages))
    await runtime.sync.run_all_once()
    for slug, start in (("text", "10:00"), ("address", "11:00")):
        html = await (await client.get(f"/book/{slug}?tz=UTC")).text()
        assert_clean_html(html)
        assert ('<span class="host-name">Alex &lt;script&gt;alert(1)&lt;/script&gt;</span>'
                in html)
        assert 'onmouseover=alert(1) x=&#34;' in html or slug == "address"
        booking = await (await client.post(f"/api/v1/pages/{slug}/bookings", json={
            "start": f"2026-11-26T{start}:00Z", "name": "Sam",
            "email": "sam@example.org"})).json()
        page = await (await client.get(booking["manage_url"].split("8080", 1)[1])).text()
        assert_clean_html(page)
        assert "Alex &lt;script&gt;" in page
    address = await (await client.get("/book/address?tz=UTC")).text()
    assert "In person: &lt;script&gt;alert(1)&lt;/script&gt; Main St" in address
