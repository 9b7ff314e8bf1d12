"""Booking through the JSON API: atomic, never double-booked, visible everywhere at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from icalendar import Calendar

from tests.booking_world import HOSTS, SLOT, guest, offered, started


async def test_a_booking_leaves_every_output_at_once(sources, make_config, serve) -> None:
    client, _ = await started(make_config, sources, serve)
    assert SLOT in await offered(client)
    before = await client.get("/feeds/secret-of-alex-0123456789/busy.ics")  # now cached
    assert before.status == 200 and "20261126T100000Z" not in await before.text()
    response = await client.post("/api/v1/pages/intro/bookings", json=guest(
        answers={"topic": "Pricing\r\nATTENDEE:mailto:evil@example.org <b>x</b>"}))
    assert response.status == 201, await response.text()
    booking = await response.json()
    assert booking["host"] == "alex" and booking["start"] == SLOT
    assert booking["end"] == "2026-11-26T10:30:00Z" and booking["id"].startswith("bk_")
    assert SLOT not in await offered(client)
    feed = await client.get("/feeds/secret-of-alex-0123456789/busy.ics")
    assert feed.headers["ETag"] != before.headers["ETag"]
    text = await feed.text()
    starts = [e["DTSTART"].dt.isoformat() for e in Calendar.from_ical(text).walk("VEVENT")]
    assert "2026-11-26T10:00:00+00:00" in starts
    for private in ("Sam", "sam@example.org", "Pricing", "evil", "<b>"):
        assert private not in text
    api = await client.get("/api/v1/freebusy?calendar=alex&start=2026-11-26&end=2026-11-27",
                           headers={"Authorization": "Bearer secret-of-alex-0123456789"})
    assert {"start": SLOT, "end": "2026-11-26T10:30:00Z", "status": "busy"} in \
        (await api.json())["busy"]


async def test_fifty_guests_one_slot(sources, make_config, serve) -> None:
    client, _ = await started(make_config, sources, serve)
    responses = await asyncio.gather(*(
        client.post("/api/v1/pages/intro/bookings", json=guest(name=f"Guest {i}"))
        for i in range(50)))
    statuses = sorted(r.status for r in responses)
    assert statuses == [201] + [409] * 49
    taken = [await r.json() for r in responses if r.status == 409]
    assert all("just taken" in t["error"] for t in taken)


async def test_round_robin_spreads_one_slot_over_three_hosts(sources, make_config,
                                                             serve) -> None:
    client, _ = await started(make_config, sources, serve, hosts=list(HOSTS),
                              mode="round_robin")
    slot = "2026-11-26T09:00:00Z"  # alex is busy then: only sam and kim can take it
    responses = await asyncio.gather(*(
        client.post("/api/v1/pages/intro/bookings", json=guest(start=slot, name=f"G{i}"))
        for i in range(5)))
    assert sorted(r.status for r in responses) == [201, 201, 409, 409, 409]
    hosts = sorted([(await r.json())["host"] for r in responses if r.status == 201])
    assert hosts == ["kim", "sam"]
    responses = await asyncio.gather(*(
        client.post("/api/v1/pages/intro/bookings", json=guest(start=SLOT, name=f"H{i}"))
        for i in range(4)))
    assert sorted(r.status for r in responses) == [201, 201, 201, 409]
    hosts = sorted([(await r.json())["host"] for r in responses if r.status == 201])
    assert hosts == ["alex", "kim", "sam"], "one per host"


async def test_cancelling_frees_the_slot(sources, make_config, serve) -> None:
    client, _ = await started(make_config, sources, serve)
    booking = await (await client.post("/api/v1/pages/intro/bookings", json=guest())).json()
    path = booking["cancel_url"].split("127.0.0.1:8080", 1)[1]
    wrong = await client.post(path.rsplit("=", 1)[0] + "=not-the-secret")
    assert wrong.status == 404
    assert SLOT not in await offered(client)
    done = await client.post(path)
    assert done.status == 200 and (await done.json())["status"] == "cancelled"
    assert SLOT in await offered(client)
    again = await client.post(path)
    assert again.status == 200, "cancelling twice is harmless"


@pytest.mark.parametrize(("body", "status", "reason"), [
    (guest(name="Sam\r\nX-INJECT:1"), 422, "one line"),
    (guest(name="<script>" + "x" * 300), 422, "one line"),
    (guest(name=""), 422, "name is required"),
    (guest(email="not-an-address"), 422, "e-mail"),
    (guest(email="a@b.c\r\nBcc: x@y.z"), 422, "e-mail"),
    (guest(email="x@example.org\n"), 422, "e-mail"),  # a pattern's $ matches before \n
    (guest(start="tomorrow"), 400, "ISO 8601"),
    (guest(start="2026-11-26T10:00:00"), 400, "time zone"),
    (guest(start="2026-11-26T10:10:00Z"), 422, "not one of this page's slots"),
    (guest(start="2026-11-20T10:00:00Z"), 422, "not one of this page's slots"),
    (guest(start="2027-06-01T10:00:00Z"), 422, "not one of this page's slots"),
    (guest(start="2026-11-28T10:00:00Z"), 422, "not one of this page's slots"),
    (guest(duration=45), 422, "not offered"),
    (guest(duration="30"), 400, "minutes (30) or like"),
    (guest(duration=[30]), 400, "minutes (30) or like"),
    (guest(duration="45m"), 422, "not offered"),
    (guest(answers={"nope": "x"}), 422, "no question named"),
    (guest(answers={"topic": "x" * 501}), 422, "at most 500"),
    (guest(answers={"topic": "a\x00b"}), 422, "plain text"),
    (guest(role="admin"), 400, "unknown field"),
    ([1, 2], 400, "JSON object"),
])
async def test_hostile_bookings_get_a_clear_error(sources, make_config, serve, body: Any,
                                                 status: int, reason: str) -> None:
    client, runtime = await started(make_config, sources, serve)
    response = await client.post("/api/v1/pages/intro/bookings", json=body)
    assert response.status == status, await response.text()
    assert reason in (await response.json())["error"]
    assert SLOT in await offered(client), "nothing was booked"


async def test_oversized_and_non_json_bodies(sources, make_config, serve) -> None:
    client, _ = await started(make_config, sources, serve)
    huge = await client.post("/api/v1/pages/intro/bookings", data=b"{" + b" " * 1_000_000,
                             headers={"Content-Type": "application/json"})
    assert huge.status == 413
    form_post = await client.post("/api/v1/pages/intro/bookings", data=b"name=x")
    assert form_post.status == 415 and "application/json" in (await form_post.json())["error"]
    garbage = await client.post("/api/v1/pages/intro/bookings", data=b"name=x",
                                headers={"Content-Type": "application/json"})
    assert garbage.status == 400 and "not JSON" in (await garbage.json())["error"]
    missing = await client.post("/api/v1/pages/nope/bookings", json=guest())
    assert missing.status == 404


async def test_daily_limit_hides_the_days_other_slots(sources, make_config, serve) -> None:
    client, _ = await started(make_config, sources, serve, daily_limit=1)
    assert len(await offered(client)) > 1
    assert (await client.post("/api/v1/pages/intro/bookings", json=guest())).status == 201
    assert await offered(client) == [], "the one booking that day used the limit"
    second = await client.post("/api/v1/pages/intro/bookings",
                               json=guest(start="2026-11-26T11:00:00Z"))
    assert second.status == 409


async def test_duration_as_minutes_or_as_the_slots_api_writes_it(sources, make_config,
                                                                 serve) -> None:
    client, _ = await started(make_config, sources, serve)
    hour = await client.post("/api/v1/pages/intro/bookings", json=guest(duration="1h"))
    assert hour.status == 201
    booking = await hour.json()
    assert (booking["start"], booking["end"]) == (SLOT, "2026-11-26T11:00:00Z")
    minutes = await client.post("/api/v1/pages/intro/bookings",
                                json=guest(start="2026-11-27T10:00:00Z", duration=30))
    assert minutes.status == 201


async def test_a_booking_leaves_the_synced_timelines_warm(sources, make_config, serve) -> None:
    client, runtime = await started(make_config, sources, serve)
    assert SLOT in await offered(client)
    synced = runtime.timelines["alex"]
    assert (await client.post("/api/v1/pages/intro/bookings", json=guest())).status == 201
    assert SLOT not in await offered(client), "the booking counts at once"
    assert runtime.timelines["alex"] is synced, "only the bookings were read again"
    other = await runtime.store.booking_generation()
    cancel = (await (await client.post("/api/v1/pages/intro/bookings", json=guest(
        start="2026-11-26T11:00:00Z"))).json())["cancel_url"].split("8080", 1)[1]
    assert (await client.post(cancel)).status == 200
    assert await runtime.store.booking_generation() != other
    assert "2026-11-26T11:00:00Z" in await offered(client)



@pytest.mark.parametrize("buffer", ["buffer_before", "buffer_after"])
async def test_a_buffer_is_kept_on_both_sides_of_every_booking(sources, make_config, serve,
                                                               buffer: str) -> None:
    """With either buffer, the slot touching an existing booking is hidden and refused,
    on whichever side of it the new slot lies: the booking keeps its buffer as well
    as the new slot."""
    client, _ = await started(make_config, sources, serve, **{buffer: "10m"})
    first = await client.post("/api/v1/pages/intro/bookings",
                              json=guest(start="2026-11-26T10:30:00Z"))
    assert first.status == 201, await first.text()
    for touching in ("2026-11-26T10:00:00Z", "2026-11-26T11:00:00Z"):
        assert touching not in await offered(client)
        response = await client.post("/api/v1/pages/intro/bookings", json=guest(start=touching))
        assert response.status == 409, await response.text()
    later = await client.post("/api/v1/pages/intro/bookings",
                              json=guest(start="2026-11-26T11:30:00Z"))
    assert later.status == 201, await later.text()
