"""Bookings become holds on a real CalDAV server: exactly once, across crashes, and removed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import pytest
from icalendar import Calendar as ICalendar

from adapters.caldav import HOLD_MARKER
from server.kit.clock import FixedClock
from server.sync.adapter_kinds import ADAPTER_KINDS, AdapterContext
from tests.conftest import NOW, event, ics
from tests.peers import Peer, PeerPool, peer_for

SLOT = "2026-11-26T10:00:00Z"


@pytest.fixture(params=["radicale", "xandikos"])
def peer(request: pytest.FixtureRequest, peer_pool: PeerPool) -> Iterator[Peer]:
    yield from peer_for(peer_pool, request.param, request, pytest.MonkeyPatch())


def config(make_config: Any, peer: Peer, **page: Any) -> Any:
    tls = {"ca_file": peer.ca_file} if peer.ca_file else {}
    source = {"name": "dav", "kind": "caldav", "url": peer.base_url, "username": peer.username,
              "password": peer.password, "calendars": ["Work"], **tls}
    booking_page = {
        "slug": "intro", "title": "Intro call", "hosts": ["me"], "duration": "30m",
        "timezone": "UTC", "minimum_notice": "1h",
        "hours": {d: ["09:00-12:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
        "hold_target": {"me": {"source": "dav", "calendar": "Work"}},
        "hold_title": "{title} with {guest_name}", "video_link": "https://meet.example/{random}",
        **page}
    return make_config([source], booking_pages=[booking_page])


def holds(peer: Peer, calendar: Any) -> list[Any]:
    """The calendar's events that are fbproxy holds (others are the host's own)."""
    events = []
    for href in peer.hrefs(calendar):
        body = peer.request("GET", href, expect=(200,)).text
        events += [e for e in ICalendar.from_ical(body).walk("VEVENT") if HOLD_MARKER in e]
    return events


async def test_booking_writes_one_hold_across_crashes_and_cancel_removes_it(
        peer: Peer, make_config: Any, serve: Any) -> None:
    work = peer.make_calendar("Work")
    client, runtime = await serve(config(make_config, peer))
    assert (await runtime.sync.run_all_once())[0].ok
    response = await client.post("/api/v1/pages/intro/bookings", json={
        "start": SLOT, "name": "Sam <Guest>", "email": "sam@example.org"})
    assert response.status == 201, await response.text()
    booking = await response.json()
    assert holds(peer, work) == [], "the hold is queued, not written in the request"

    assert await runtime.holds.run_once() == 1
    [hold] = holds(peer, work)
    assert str(hold["SUMMARY"]) == "Intro call with Sam <Guest>"
    assert str(hold["STATUS"]) == "TENTATIVE" and str(hold[HOLD_MARKER]) == booking["id"]
    assert str(hold["LOCATION"]).startswith("https://meet.example/")

    # A crash after the upstream write but before the outbox row was marked done:
    # the worker delivers again, and the server still holds exactly one event.
    await runtime.store.database.writer.execute(  # simulating the crash window
        "UPDATE hold_outbox SET state = 'pending' WHERE booking_id = ?", (booking["id"],))
    assert await runtime.holds.run_once() == 1
    assert len(holds(peer, work)) == 1

    # The hold comes back through sync; the slot stays taken, counted once.
    await runtime.sync.run_all_once()
    api = await client.get("/api/v1/freebusy?calendar=me&start=2026-11-26&end=2026-11-27",
                           headers={"Authorization": "Bearer s3cret-s3cret-s3cret-0001"})
    assert [b for b in (await api.json())["busy"] if b["start"] == SLOT] == [
        {"start": SLOT, "end": "2026-11-26T10:30:00Z", "status": "busy"}]

    path = booking["cancel_url"].split("127.0.0.1:8080", 1)[1]
    assert (await client.post(path)).status == 200
    api = await client.get("/api/v1/freebusy?calendar=me&start=2026-11-26&end=2026-11-27",
                           headers={"Authorization": "Bearer s3cret-s3cret-s3cret-0001"})
    assert not [b for b in (await api.json())["busy"] if b["start"] == SLOT], \
        "cancelling frees the slot at once, before the upstream hold is removed"
    assert await runtime.holds.run_once() == 1
    assert holds(peer, work) == []


async def test_cancel_before_delivery_never_writes(peer: Peer, make_config: Any,
                                                   serve: Any) -> None:
    work = peer.make_calendar("Work")
    client, runtime = await serve(config(make_config, peer))
    await runtime.sync.run_all_once()
    booking = await (await client.post("/api/v1/pages/intro/bookings", json={
        "start": SLOT, "name": "Sam", "email": "sam@example.org"})).json()
    path = booking["cancel_url"].split("127.0.0.1:8080", 1)[1]
    assert (await client.post(path)).status == 200
    await runtime.holds.run_once()
    await runtime.holds.run_once()
    assert holds(peer, work) == []


async def test_unreachable_target_retries_with_backoff(peer: Peer, make_config: Any,
                                                       serve: Any, clock: Any) -> None:
    from datetime import timedelta

    work = peer.make_calendar("Work")
    client, runtime = await serve(config(make_config, peer))
    await runtime.sync.run_all_once()
    peer.stop()
    booking = await (await client.post("/api/v1/pages/intro/bookings", json={
        "start": SLOT, "name": "Sam", "email": "sam@example.org"})).json()
    assert await runtime.holds.run_once() == 0
    [(action, state, count, error)] = await runtime.store.hold_summary()
    assert (action, state, count) == ("write", "pending", 1) and error
    peer.start()
    assert await runtime.holds.run_once() == 0, "not due yet: backoff"
    clock.set(clock.now() + timedelta(minutes=2))
    assert await runtime.holds.run_once() == 1
    [hold] = holds(peer, work)
    assert str(hold[HOLD_MARKER]) == booking["id"]


class DiesAfterTheWrite:
    """The real CalDAV adapter, except that the process "dies" right after a hold's PUT.

    ``write_hold`` does the real upstream write, then never returns: stopping
    the worker there is the crash window between the upstream write and the
    outbox row being marked done.
    """

    def __init__(self, real: Any) -> None:
        self._real = real
        self.written = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    async def write_hold(self, hold: Any) -> Any:
        await self._real.write_hold(hold)
        self.written.set()
        await asyncio.Event().wait()


async def test_acceptance_two_sources_every_output_and_a_killed_worker(
        peer: Peer, make_config: Any, serve: Any, tmp_path: Any) -> None:
    """The issue's acceptance run: book over two sources, see every output change at
    once, kill the hold worker mid-delivery, restart, one hold; cancel removes it."""
    work = peer.make_calendar("Work")
    peer.put_event(work, "standup.ics", "\r\n".join([
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//t//EN", "BEGIN:VEVENT", "UID:standup",
        "DTSTAMP:20260101T000000Z", "DTSTART:20261126T090000Z", "DTEND:20261126T093000Z",
        "SUMMARY:Standup", "END:VEVENT", "END:VCALENDAR", ""]))
    (tmp_path / "personal.ics").write_text(ics(event(
        "dentist", "20261126T110000Z", "20261126T113000Z")))
    raw_sources = [{"name": "dav", "kind": "caldav", "url": peer.base_url,
                    "username": peer.username, "password": peer.password,
                    "calendars": ["Work"], **({"ca_file": peer.ca_file} if peer.ca_file else {})},
                   {"name": "personal", "kind": "ics", "url": "personal.ics"}]
    settings = make_config(raw_sources, booking_pages=[{
        "slug": "intro", "title": "Intro call", "hosts": ["me"], "duration": "30m",
        "timezone": "UTC", "minimum_notice": "1h",
        "hours": {d: ["09:00-12:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
        "hold_target": {"me": {"source": "dav", "calendar": "Work"}}}])
    auth = {"Authorization": "Bearer s3cret-s3cret-s3cret-0001"}

    async with aiohttp.ClientSession() as session:
        with ThreadPoolExecutor(2) as executor:
            dav_source = settings.source("dav")
            assert dav_source is not None
            context = AdapterContext(session, executor, FixedClock(NOW), 120)
            gated = DiesAfterTheWrite(ADAPTER_KINDS["caldav"](dav_source, context))
            client, runtime = await serve(settings, adapters={"dav": gated})
            assert all(result.ok for result in await runtime.sync.run_all_once())

            async def outputs() -> tuple[list[str], str, str, list[str]]:
                slots = await (await client.get(
                    "/api/v1/pages/intro/slots?start=2026-11-26&end=2026-11-27")).json()
                feed = await (await client.get("/feeds/s3cret-s3cret-s3cret-0001/busy.ics")).text()
                freebusy = await (await client.get(
                    "/feeds/s3cret-s3cret-s3cret-0001/freebusy.ics")).text()
                api = await (await client.get(
                    "/api/v1/freebusy?start=2026-11-26&end=2026-11-27", headers=auth)).json()
                return ([s["start"][11:16] for s in slots["slots"]], feed, freebusy,
                        [b["start"][11:16] for b in api["busy"]])

            slots, feed, freebusy, busy = await outputs()
            assert slots == ["09:30", "10:00", "10:30", "11:30"]  # standup, dentist busy
            assert busy == ["09:00", "11:00"]
            response = await client.post("/api/v1/pages/intro/bookings", json={
                "start": SLOT, "name": "Sam", "email": "sam@example.org"})
            assert response.status == 201, await response.text()
            booking = await response.json()
            slots, feed, freebusy, busy = await outputs()
            assert slots == ["09:30", "10:30", "11:30"]
            assert busy == ["09:00", "10:00", "11:00"]
            assert "DTSTART:20261126T100000Z" in feed
            assert "20261126T100000Z/20261126T103000Z" in freebusy

            runtime.holds.start()
            await asyncio.wait_for(gated.written.wait(), 30)
            await runtime.holds.stop()  # killed after the PUT, before "done"
            assert len(holds(peer, work)) == 1
            assert ("write", "pending", 1, None) in await runtime.store.hold_summary(), \
                "the outbox row is still pending"
            await client.close()

    # A new process on the same database: the hold is delivered again, still one event.
    client, runtime = await serve(settings)
    assert await runtime.holds.run_once() == 1
    [hold] = holds(peer, work)
    assert str(hold[HOLD_MARKER]) == booking["id"]
    assert await runtime.holds.run_once() == 0
    # The hold comes back through sync and is not counted twice.
    assert all(result.ok for result in await runtime.sync.run_all_once())
    slots = await (await client.get(
        "/api/v1/pages/intro/slots?start=2026-11-26&end=2026-11-27")).json()
    assert [s["start"][11:16] for s in slots["slots"]] == ["09:30", "10:30", "11:30"]

    path = booking["cancel_url"].split("127.0.0.1:8080", 1)[1]
    assert (await client.post(path)).status == 200
    slots = await (await client.get(
        "/api/v1/pages/intro/slots?start=2026-11-26&end=2026-11-27")).json()
    assert "10:00" in [s["start"][11:16] for s in slots["slots"]]
    assert await runtime.holds.run_once() == 1
    assert holds(peer, work) == []


async def test_the_live_recheck_sees_an_event_added_after_the_last_sync(
        peer: Peer, make_config: Any, serve: Any) -> None:
    work = peer.make_calendar("Work")
    client, runtime = await serve(config(make_config, peer))
    assert (await runtime.sync.run_all_once())[0].ok
    slots = await (await client.get("/api/v1/pages/intro/slots?start=2026-11-26&end=2026-11-27"
                                    )).json()
    assert SLOT in [s["start"] for s in slots["slots"]]
    peer.put_event(work, "late.ics", "\r\n".join([
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//t//EN", "BEGIN:VEVENT", "UID:late",
        "DTSTAMP:20260101T000000Z", "DTSTART:20261126T100000Z", "DTEND:20261126T110000Z",
        "SUMMARY:Booked a second ago", "END:VEVENT", "END:VCALENDAR", ""]))
    response = await client.post("/api/v1/pages/intro/bookings", json={
        "start": SLOT, "name": "Sam", "email": "sam@example.org"})
    assert response.status == 409, "the re-check synced the new event before booking"


async def test_a_required_recheck_refuses_when_the_upstream_is_down(
        peer: Peer, make_config: Any, serve: Any) -> None:
    peer.make_calendar("Work")
    client, runtime = await serve(config(make_config, peer, recheck="required"))
    assert (await runtime.sync.run_all_once())[0].ok
    peer.stop()
    try:
        response = await client.post("/api/v1/pages/intro/bookings", json={
            "start": SLOT, "name": "Sam", "email": "sam@example.org"})
        assert response.status == 503 and response.headers["Retry-After"] == "5"
        assert "try again" in (await response.json())["error"]
    finally:
        peer.start()
