"""Holds written to real CalDAV servers: exactly once per booking, deletable, recognisable."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from icalendar import Calendar as ICalendar

from adapters.base import Hold
from adapters.caldav import HOLD_MARKER, CaldavAdapter, CaldavSettings, hold_uid, render_hold
from tests.peers import Peer, PeerPool, peer_for

START = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)


@pytest.fixture(params=["radicale", "xandikos"])
def peer(request: pytest.FixtureRequest, peer_pool: PeerPool,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Peer]:
    yield from peer_for(peer_pool, request.param, request, monkeypatch)


def hold(booking_id: str = "bk_01HZX", title: str = "Call with Sam", **extra: str) -> Hold:
    return Hold(booking_id=booking_id, start=START, end=START + timedelta(minutes=30),
                title=title, created=START - timedelta(days=1), **extra)


def adapter(peer: Peer, hold_calendar: str) -> CaldavAdapter:
    return CaldavAdapter("dav", CaldavSettings(
        url=peer.base_url, username=peer.username, password=peer.password,
        hold_calendar=hold_calendar, ca_file=peer.ca_file))


async def test_hold_written_twice_exists_once_and_deletes(peer: Peer) -> None:
    calendar = peer.make_calendar("Bookings")
    dav = adapter(peer, "Bookings")
    try:
        first = await dav.write_hold(hold())
        retried = await dav.write_hold(hold())  # a retry after a crash: same booking id
        assert first.ref == retried.ref
        hrefs = peer.hrefs(calendar)
        assert len(hrefs) == 1 and hrefs[0].endswith(f"{hold_uid('bk_01HZX')}.ics")
        body = peer.request("GET", hrefs[0], expect=(200,)).text
        [event] = ICalendar.from_ical(body).walk("VEVENT")
        assert str(event["STATUS"]) == "TENTATIVE" and str(event["TRANSP"]) == "OPAQUE"
        assert str(event[HOLD_MARKER]) == "bk_01HZX"
        assert event["DTSTART"].dt == START
        await dav.delete_hold(first)
        assert peer.hrefs(calendar) == []
        await dav.delete_hold(first)  # already gone: still fine
    finally:
        await dav.close()


async def test_hold_calendar_by_path_and_hostile_text(peer: Peer) -> None:
    calendar = peer.make_calendar("Other")
    dav = adapter(peer, calendar.url)
    hostile = hold("bk_2", description="Notes\r\nATTENDEE:mailto:evil@example.org",
                   location="<script>x</script>")
    try:
        await dav.write_hold(hostile)
        [href] = peer.hrefs(calendar)
        [event] = ICalendar.from_ical(peer.request("GET", href).text).walk("VEVENT")
        assert "ATTENDEE" not in event, "text must not become a property"
        description = str(event["DESCRIPTION"]).replace("\r\n", "\n")
        assert description == "Notes\nATTENDEE:mailto:evil@example.org"
    finally:
        await dav.close()


def test_hold_uid_is_derived_and_safe() -> None:
    assert hold_uid("bk_01") == hold_uid("bk_01") == "fbproxy-hold-bk_01"
    assert hold_uid("../../etc\r\nX:1") == "fbproxy-hold-etcX1"
    text = render_hold(hold(title="Lunch\r\nORGANIZER:mailto:x@example.org"))
    assert "\r\nORGANIZER:" not in text
