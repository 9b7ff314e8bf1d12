"""Moving a booking (JSON API and the guest's pages), cancelling with a reason, the host's page."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.booking_world import SLOT, guest, offered, started
from tests.conftest import NOW, event, ics
from tests.test_booking_form import hidden, slot_labels
from tests.test_injection import ICAL, SCRIPT, assert_clean_html

BASE = "http://127.0.0.1:8080"


async def booked(client: Any, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/pages/intro/bookings", json=guest(**body))
    assert response.status == 201, await response.text()
    return await response.json()


async def move(client: Any, booking: dict[str, Any], start: str, **body: Any) -> Any:
    return await client.post(booking["reschedule_url"].removeprefix(BASE),
                             json={"start": start, **body})


async def test_a_move_frees_the_old_time_and_takes_the_new_at_once(sources, make_config,
                                                                   serve) -> None:
    client, runtime = await started(make_config, sources, serve)
    booking = await booked(client)
    assert booking["sequence"] == 0
    response = await move(client, booking, "2026-11-26T11:00:00Z")
    assert response.status == 200, await response.text()
    moved = await response.json()
    assert (moved["id"], moved["start"], moved["end"]) == (
        booking["id"], "2026-11-26T11:00:00Z", "2026-11-26T11:30:00Z")
    assert moved["sequence"] == 1 and moved["manage_url"] == booking["manage_url"]
    slots = await offered(client)
    assert SLOT in slots and "2026-11-26T11:00:00Z" not in slots
    assert (await client.post("/api/v1/pages/intro/bookings",
                              json=guest(name="Kim"))).status == 201, "the old time is free"
    assert (await client.post("/api/v1/pages/intro/bookings", json=guest(
        start="2026-11-26T11:00:00Z", name="Kim"))).status == 409, "the new one is not"
    stored = await runtime.store.booking(booking["id"])
    assert stored is not None and stored.sequence == 1 and stored.start == 1795690800
    blocks = await runtime.store.busy_rows((), 1795651200, 1795737600, calendars=("alex",))
    assert sorted(blocks) == [(1795687200, 1795689000, "busy"), (1795690800, 1795692600, "busy")]


async def test_the_guests_own_time_counts_as_free(sources, make_config, serve) -> None:
    client, _ = await started(make_config, sources, serve)
    booking = await booked(client, duration=60)  # 10:00-11:00
    response = await move(client, booking, "2026-11-26T10:30:00Z")  # overlaps its own hour
    assert response.status == 200, await response.text()
    moved = await response.json()
    assert (moved["start"], moved["end"]) == ("2026-11-26T10:30:00Z", "2026-11-26T11:30:00Z")
    again = await move(client, moved, "2026-11-26T10:30:00Z")
    assert again.status == 200 and (await again.json())["sequence"] == 1, "no move, no news"
    shorter = await move(client, moved, "2026-11-26T10:00:00Z", duration="30m")
    assert shorter.status == 200
    assert (await shorter.json())["end"] == "2026-11-26T10:30:00Z"


@pytest.mark.parametrize(("start", "status", "reason"), [
    ("2026-11-26T09:00:00Z", 409, "just taken"),  # alex's own event
    ("2026-11-26T13:00:00Z", 422, "not one of this page's slots"),  # outside hours
    ("2026-11-25T12:30:00Z", 422, "not one of this page's slots"),  # inside the notice
    ("2026-12-20T10:00:00Z", 422, "not one of this page's slots"),  # past max_days_ahead
    ("2026-11-26T10:10:00Z", 422, "not one of this page's slots"),  # off the grid
    ("tomorrow", 400, "ISO 8601"),
])
async def test_the_pages_rules_apply_to_the_new_time(sources, make_config, serve, start: str,
                                                    status: int, reason: str) -> None:
    client, _ = await started(make_config, sources, serve)
    booking = await booked(client)
    response = await move(client, booking, start)
    assert response.status == status, await response.text()
    assert reason in (await response.json())["error"]
    assert SLOT not in await offered(client), "a refused move keeps the booking where it was"


async def test_the_daily_limit_counts_the_moved_booking_once(sources, make_config,
                                                              serve) -> None:
    client, _ = await started(make_config, sources, serve, daily_limit=1)
    booking = await booked(client)
    assert (await move(client, booking, "2026-11-26T11:00:00Z")).status == 200
    await booked(client, start="2026-11-27T10:00:00Z", name="Kim")
    full = await move(client, booking, "2026-11-27T11:00:00Z")
    assert full.status == 409, await full.text()


async def test_only_a_confirmed_booking_not_yet_started_moves(sources, make_config, serve,
                                                              clock) -> None:
    client, _ = await started(make_config, sources, serve)
    booking = await booked(client)
    wrong = await client.post(f"/api/v1/bookings/{booking['id']}/reschedule?secret=guess",
                              json={"start": "2026-11-26T11:00:00Z"})
    assert wrong.status == 404
    not_json = await client.post(booking["reschedule_url"].removeprefix(BASE),
                                 data={"start": "2026-11-26T11:00:00Z"})
    assert not_json.status == 415
    clock.set(NOW + timedelta(days=1))  # Thursday 12:00: the 10:00 booking has started
    started_one = await move(client, booking, "2026-11-27T10:00:00Z")
    assert started_one.status == 409 and "already started" in (await started_one.json())["error"]
    clock.set(NOW)
    cancel = booking["cancel_url"].removeprefix(BASE)
    assert (await client.post(cancel)).status == 200
    gone = await move(client, booking, "2026-11-26T11:00:00Z")
    assert gone.status == 409 and "cancelled" in (await gone.json())["error"]


async def test_round_robin_keeps_the_host_when_free_else_chooses_another(
        sources, make_config, serve, tmp_path: Path) -> None:
    (tmp_path / "sam.ics").write_text(ics(event("s1", "20261126T110000Z", "20261126T113000Z")))
    client, _ = await started(make_config, sources, serve, hosts=["alex", "sam"],
                              mode="round_robin")
    booking = await booked(client, start="2026-11-26T09:00:00Z")  # alex is busy: sam
    assert booking["host"] == "sam"
    kept = await move(client, booking, "2026-11-26T10:00:00Z")  # both free: sam stays
    assert kept.status == 200 and (await kept.json())["host"] == "sam"
    switched = await move(client, booking, "2026-11-26T11:00:00Z")  # sam is busy: alex
    assert switched.status == 200 and (await switched.json())["host"] == "alex"
    assert (await client.post("/api/v1/pages/intro/bookings", json=guest(
        start="2026-11-26T10:00:00Z", name="Kim"))).status == 201


async def test_cancel_with_a_reason_through_the_api(sources, make_config, serve) -> None:
    client, runtime = await started(make_config, sources, serve)
    booking = await booked(client)
    path = booking["cancel_url"].removeprefix(BASE)
    bad = await client.post(path, json={"reason": "x\x00y"})
    assert bad.status == 422
    odd = await client.post(path, json={"reason": "x", "by": "host"})
    assert odd.status == 400
    done = await client.post(path, json={"reason": "Ill, sorry"})
    body = await done.json()
    assert done.status == 200 and body["status"] == "cancelled"
    assert (body["cancel_reason"], body["cancelled_by"], body["sequence"]) == (
        "Ill, sorry", "guest", 1)
    stored = await runtime.store.booking(booking["id"])
    assert stored is not None and stored.cancel_reason == "Ill, sorry"


# -- the guest's and the host's pages ---------------------------------------------------


async def manage_page(client: Any, booking: dict[str, Any]) -> str:
    response = await client.get(booking["manage_url"].removeprefix(BASE))
    assert response.status == 200
    return await response.text()


async def test_reschedule_through_the_pages(sources, make_config, serve) -> None:
    client, runtime = await started(make_config, sources, serve)
    booking = await booked(client, duration=60, timezone="Europe/Berlin")  # 10:00-11:00 UTC
    page = await manage_page(client, booking)
    assert "Reschedule" in page
    secret = hidden(page, "secret")
    form = await client.get(f"/booking/{booking['id']}/reschedule",
                            params={"secret": secret, "tz": "UTC"})
    html = await form.text()
    assert form.status == 200 and "Move your booking" in html
    assert "default-src 'none'" in form.headers["Content-Security-Policy"]
    # Their own hour is free for them: 10:00 and 10:30 are offered (not to anyone else).
    assert slot_labels(html) == ["09:30", "10:00", "10:30", "11:00"]
    assert "10:30" not in [s[11:16] for s in await offered(client)]
    chosen = await (await client.get(f"/booking/{booking['id']}/reschedule", params={
        "secret": secret, "tz": "UTC", "day": "2026-11-26",
        "start": "2026-11-26T10:30:00+00:00"})).text()
    fields = {name: hidden(chosen, name) for name in ("csrf", "secret", "start", "duration",
                                                      "tz")}
    no_csrf = await client.post(f"/booking/{booking['id']}/reschedule",
                                data={**fields, "csrf": ""}, allow_redirects=False)
    assert no_csrf.status == 403
    response = await client.post(f"/booking/{booking['id']}/reschedule", data=fields,
                                 allow_redirects=False)
    assert response.status == 303, await response.text()
    assert response.headers["Location"] == booking["manage_url"].removeprefix(BASE)
    page = await (await client.get(response.headers["Location"])).text()
    assert "10:30" in page or "11:30" in page  # shown in UTC or the guest's zone
    stored = await runtime.store.booking(booking["id"])
    assert stored is not None and stored.start == 1795689000 and stored.sequence == 1

    taken = await booked(client, start="2026-11-26T09:30:00Z", duration=30, name="Kim")
    assert taken["start"] == "2026-11-26T09:30:00Z"
    fields["start"] = "2026-11-26T09:30:00+00:00"
    late = await client.post(f"/booking/{booking['id']}/reschedule", data=fields)
    assert late.status == 409 and "That time was just booked" in await late.text()


async def test_the_host_page_shows_and_cancels_the_booking(sources, make_config,
                                                           serve) -> None:
    client, runtime = await started(make_config, sources, serve)
    booking = await booked(client, answers={"topic": "Pricing"})
    stored = await runtime.store.booking(booking["id"])
    assert stored is not None and stored.host_secret
    for wrong in (f"/booking/{booking['id']}/host?secret=guess",
                  f"/booking/{booking['id']}/host?secret={stored.cancel_secret}",
                  f"/booking/bk_nope/host?secret={stored.host_secret}"):
        response = await client.get(wrong)
        assert response.status == 404, wrong
    response = await client.get(f"/booking/{booking['id']}/host",
                                params={"secret": stored.host_secret})
    html = await response.text()
    assert response.status == 200 and "Sam Guest" in html and "sam@example.org" in html
    assert "Topic" in html and "Pricing" in html
    fields = {"csrf": hidden(html, "csrf"), "secret": hidden(html, "secret"),
              "reason": "Double-booked, sorry"}
    assert (await client.post(f"/booking/{booking['id']}/host/cancel",
                              data={**fields, "csrf": "x" * 40})).status == 403
    assert (await client.post(f"/booking/{booking['id']}/host/cancel", data={
        **fields, "secret": stored.cancel_secret})).status == 404, "the guest's secret is not"
    done = await client.post(f"/booking/{booking['id']}/host/cancel", data=fields,
                             allow_redirects=False)
    assert done.status == 303
    cancelled = await runtime.store.booking(booking["id"])
    assert cancelled is not None and cancelled.status == "cancelled"
    assert (cancelled.cancelled_by, cancelled.cancel_reason) == ("host", "Double-booked, sorry")
    host_view = await (await client.get(done.headers["Location"])).text()
    assert "This booking is cancelled" in host_view and "Double-booked, sorry" in host_view
    guest_view = await manage_page(client, booking)
    assert "The host cancelled this booking" in guest_view
    assert "Double-booked, sorry" in guest_view
    assert SLOT in await offered(client)


async def test_the_cancel_confirmation_needs_csrf(sources, make_config, serve) -> None:
    client, runtime = await started(make_config, sources, serve)
    booking = await booked(client)
    page = await manage_page(client, booking)
    confirm = await client.get(f"/booking/{booking['id']}/cancel",
                               params={"secret": hidden(page, "secret")})
    html = await confirm.text()
    assert confirm.status == 200 and "Cancel this booking?" in html
    posted = await client.post(f"/booking/{booking['id']}/cancel",
                               data={"secret": hidden(html, "secret"), "reason": "x"})
    assert posted.status == 403
    stored = await runtime.store.booking(booking["id"])
    assert stored is not None and stored.status == "confirmed"


HOSTILE_REASON = f"Sorry\r\nATTENDEE:mailto:evil@example.org\n{ICAL}\n{SCRIPT}"


@pytest.mark.parametrize("by", ["guest", "host"])
async def test_a_hostile_reason_comes_out_escaped(sources, make_config, serve,
                                                  by: str) -> None:
    client, runtime = await started(make_config, sources, serve)
    booking = await booked(client, name="<b>Sam</b>")
    stored = await runtime.store.booking(booking["id"])
    assert stored is not None
    if by == "guest":
        page = await manage_page(client, booking)
        confirm = await (await client.get(f"/booking/{booking['id']}/cancel",
                                          params={"secret": hidden(page, "secret")})).text()
        response = await client.post(f"/booking/{booking['id']}/cancel", data={
            "csrf": hidden(confirm, "csrf"), "secret": stored.cancel_secret,
            "reason": HOSTILE_REASON}, allow_redirects=False)
    else:
        host = await (await client.get(f"/booking/{booking['id']}/host",
                                       params={"secret": stored.host_secret})).text()
        response = await client.post(f"/booking/{booking['id']}/host/cancel", data={
            "csrf": hidden(host, "csrf"), "secret": stored.host_secret,
            "reason": HOSTILE_REASON}, allow_redirects=False)
    assert response.status == 303
    cancelled = await runtime.store.booking(booking["id"])
    assert cancelled is not None and "ATTENDEE:mailto" in cancelled.cancel_reason
    for path in (booking["manage_url"].removeprefix(BASE),
                 f"/booking/{booking['id']}/host?secret={stored.host_secret}"):
        html = await (await client.get(path)).text()
        assert_clean_html(html)
        assert "&lt;script&gt;" in html and "&lt;b&gt;Sam&lt;/b&gt;" in html
    invite = await (await client.get(booking["manage_url"].removeprefix(BASE).replace(
        "?secret", "/invite.ics?secret"))).text()
    assert "X-EVIL" not in invite and "\nATTENDEE:mailto:evil" not in invite
