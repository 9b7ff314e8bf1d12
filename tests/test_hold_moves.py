"""Issue 23 at the adapter level: a hold moved in place (reschedule), and holds that ask
the provider to invite the guest. Real Radicale and Xandikos; the Google and Graph fakes
driven by the real client libraries."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httplib2
import pytest
from caldav.davclient import DAVClient
from icalendar import Calendar as ICalendar

from adapters import google as google_adapter
from adapters import microsoft
from adapters.base import Attendee, Hold, HoldRef
from adapters.caldav import HOLD_MARKER, CaldavAdapter, CaldavSettings, hold_uid
from adapters.google import (
    GOOGLE_MEET,
    WRITE_SCOPE,
    GoogleAdapter,
    GoogleSettings,
    hold_event_id,
    save_token,
)
from tests import test_microsoft_as_documented
from tests.fake_google import FakeGoogle
from tests.peers import Peer, PeerPool, peer_for

START = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
LATER = START + timedelta(days=1, hours=2)
GUEST = Attendee("Sam \"Guest\"\r\nATTENDEE:mailto:evil@example.org", "sam@example.org")


def hold(booking_id: str = "bk_move1", start: datetime = START, **extra: Any) -> Hold:
    fields: dict[str, Any] = {"title": "Call with Sam", "description": "Booked."}
    fields.update(extra)
    return Hold(booking_id=booking_id, start=start, end=start + timedelta(minutes=30),
                created=START - timedelta(days=1), **fields)


# -- CalDAV: real Radicale and Xandikos --------------------------------------------------


@pytest.fixture(params=["radicale", "xandikos"])
def peer(request: pytest.FixtureRequest, peer_pool: PeerPool,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Peer]:
    yield from peer_for(peer_pool, request.param, request, monkeypatch)


class InterferingClient(DAVClient):
    """The real DAVClient, except that ``before_put`` runs before its next PUTs: another
    client's edit landing between the adapter's GET and its PUT."""

    def __init__(self, *args: Any, before_put: Callable[[], None], times: int = 1,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.before_put, self.times = before_put, times

    def request(self, url: str, method: str = "GET", body: str = "",
                headers: Any = None, **kwargs: Any) -> Any:
        if method == "PUT" and self.times > 0:
            self.times -= 1
            self.before_put()
        return super().request(url, method, body, headers, **kwargs)


def dav_adapter(peer: Peer, calendar: str, **client: Any) -> CaldavAdapter:
    settings = CaldavSettings(url=peer.base_url, username=peer.username,
                              password=peer.password, hold_calendar=calendar,
                              ca_file=peer.ca_file)
    factory = None
    if client:
        def factory() -> DAVClient:
            return InterferingClient(url=settings.url, username=settings.username,
                                     password=settings.password, timeout=30,
                                     ssl_verify_cert=settings.ca_file or True,
                                     enable_rfc6764=False, **client)
    return CaldavAdapter("dav", settings, client_factory=factory)


def stored(peer: Peer, href: str) -> Any:
    [event] = ICalendar.from_ical(peer.request("GET", href, expect=(200,)).text).walk("VEVENT")
    return event


def sequence(event: Any) -> int:
    return int(event.get("SEQUENCE", 0))


async def test_a_caldav_hold_moves_in_place_once(peer: Peer) -> None:
    calendar = peer.make_calendar("Bookings")
    dav = dav_adapter(peer, "Bookings")
    try:
        ref = await dav.write_hold(hold(location="https://video.example/r/1"))
        [href] = peer.hrefs(calendar)
        before = stored(peer, href)
        moved = await dav.move_hold(ref, hold(start=LATER, title="Call with Sam (moved)",
                                              attendees=(GUEST,)))
        assert moved.ref == ref.ref and moved.booking_id == ref.booking_id
        assert peer.hrefs(calendar) == [href], "the same resource, no second event"
        event = stored(peer, href)
        assert event["DTSTART"].dt == LATER and event["DTEND"].dt == LATER + timedelta(minutes=30)
        assert str(event["SUMMARY"]) == "Call with Sam (moved)"
        assert str(event["UID"]) == str(before["UID"]) == hold_uid("bk_move1")
        assert str(event[HOLD_MARKER]) == "bk_move1"
        assert sequence(event) == sequence(before) + 1
        assert str(event["LOCATION"]) == "https://video.example/r/1", "the link is kept"
        assert "ATTENDEE" not in event, "CalDAV holds carry no attendees: fbproxy invites"
        assert moved.etag and moved.etag == peer.request("GET", href).headers.get("ETag")

        again = await dav.move_hold(moved, hold(start=LATER, title="Call with Sam (moved)"))
        assert peer.hrefs(calendar) == [href]
        assert sequence(stored(peer, href)) == sequence(event), "a repeated move changes nothing"
        assert again.etag == moved.etag
    finally:
        await dav.close()


async def test_a_caldav_move_survives_another_clients_edit(peer: Peer) -> None:
    calendar = peer.make_calendar("Bookings")
    edits: list[str] = []

    def someone_edits() -> None:
        """Another client adds an alarm to the hold, with its own SEQUENCE bump."""
        [href] = peer.hrefs(calendar)
        text = peer.request("GET", href).text.replace(
            "END:VEVENT", "BEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:Soon\r\n"
            "TRIGGER:-PT10M\r\nEND:VALARM\r\nEND:VEVENT")
        response = peer.request("PUT", href, data=text.encode(), expect=(201, 204),
                                headers={"Content-Type": "text/calendar; charset=utf-8"})
        edits.append(response.headers.get("ETag", ""))

    writer = dav_adapter(peer, "Bookings")
    mover = dav_adapter(peer, "Bookings", before_put=someone_edits)
    try:
        ref = await writer.write_hold(hold())
        moved = await mover.move_hold(ref, hold(start=LATER))
        assert len(edits) == 1, "the first PUT met the edit"
        [href] = peer.hrefs(calendar)
        event = stored(peer, href)
        assert event["DTSTART"].dt == LATER, "read again after the 412 and moved"
        assert event.walk("VALARM"), "the other client's change is kept"
        assert moved.etag == peer.request("GET", href).headers.get("ETag") != edits[0]
    finally:
        await writer.close()
        await mover.close()


async def test_a_caldav_move_of_a_hold_deleted_upstream_writes_it_again(peer: Peer) -> None:
    calendar = peer.make_calendar("Bookings")
    dav = dav_adapter(peer, "Bookings")
    try:
        ref = await dav.write_hold(hold())
        [href] = peer.hrefs(calendar)
        peer.request("DELETE", href, expect=(200, 204))
        moved = await dav.move_hold(ref, hold(start=LATER))
        assert peer.hrefs(calendar) == [href], "re-created at the same href"
        event = stored(peer, href)
        assert event["DTSTART"].dt == LATER and str(event["UID"]) == hold_uid("bk_move1")
        assert sequence(event) >= 1
        assert moved.ref == ref.ref
        await dav.delete_hold(moved, notify=True)  # the keyword is accepted; nothing to ask
        assert peer.hrefs(calendar) == []
    finally:
        await dav.close()


async def test_a_caldav_move_keeps_hostile_text_as_text(peer: Peer) -> None:
    calendar = peer.make_calendar("Bookings")
    dav = dav_adapter(peer, "Bookings")
    try:
        ref = await dav.write_hold(hold())
        await dav.move_hold(ref, hold(start=LATER, title="X\r\nORGANIZER:mailto:x@example.org",
                                      description="a;b,c\\d\nline"))
        [href] = peer.hrefs(calendar)
        event = stored(peer, href)
        assert "ORGANIZER" not in event
        assert str(event["SUMMARY"]).replace("\r\n", "\n") == \
            "X\nORGANIZER:mailto:x@example.org"
        assert str(event["DESCRIPTION"]) == "a;b,c\\d\nline"
    finally:
        await dav.close()


def test_hold_ref_is_unchanged_by_the_new_fields() -> None:
    assert HoldRef("b", "r") == HoldRef("b", "r", None)
    assert hold().attendees == ()


# -- Google: the fake, through google-api-python-client ---------------------------------

OWNER = "alex@example.org"


@pytest.fixture
def google(fake_google: FakeGoogle, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[GoogleAdapter]:
    fake_google.add_calendar(OWNER, "Alex", primary=True)
    monkeypatch.setattr(google_adapter, "MEET_WAITS", (0.0,) * 5)  # no real waiting
    token_file = tmp_path / "google.token.json"
    save_token(token_file, fake_google.grant([WRITE_SCOPE])[1], [WRITE_SCOPE],
               fake_google.token_uri)
    yield GoogleAdapter("g", GoogleSettings(
        client_id=fake_google.client_id, client_secret=fake_google.client_secret,
        token_file=token_file, api_endpoint=fake_google.api_endpoint,
        token_uri=fake_google.token_uri),
        http_factory=lambda: httplib2.Http(timeout=10, proxy_info=None))


def the_event(fake: FakeGoogle) -> dict[str, Any]:
    [event] = fake.events(OWNER)
    return event


def google_items(changes: Any) -> dict[str, Any]:
    found = {}
    for item in changes.upserted:
        [event] = ICalendar.from_ical(item.ical).walk("VEVENT")
        found[item.key] = event
    return found


async def test_a_google_hold_moves_in_place_and_keeps_its_meet(fake_google, google) -> None:
    ref = await google.write_hold(hold(location=GOOGLE_MEET))
    assert ref.video_link.startswith("https://meet.google.com/")
    state = (await google.sync({})).state
    first = the_event(fake_google)

    moved = await google.move_hold(ref, hold(start=LATER, title="Moved", status="CONFIRMED"))
    event = the_event(fake_google)
    assert event["id"] == first["id"] == hold_event_id("bk_move1"), "the same event"
    assert moved.ref == ref.ref and moved.video_link == ref.video_link
    assert event["hangoutLink"] == ref.video_link, "the Meet conference is kept"
    assert event["conferenceData"]["conferenceId"] == first["conferenceData"]["conferenceId"]
    assert event["start"]["dateTime"] == "2026-12-01T16:00:00Z"
    assert event["summary"] == "Moved" and event["status"] == "confirmed"
    assert event["sequence"] > first["sequence"] and moved.etag == event["etag"]
    assert event["extendedProperties"] == first["extendedProperties"], "the marker stays"
    assert fake_google.send_updates == [("insert", event["id"], "none"),
                                        ("patch", event["id"], "none")]

    # The next incremental round carries the new time.
    [item] = google_items(await google.sync(state)).values()
    assert item["DTSTART"].dt == LATER

    again = await google.move_hold(moved, hold(start=LATER, title="Moved", status="CONFIRMED"))
    assert [e["id"] for e in fake_google.events(OWNER)] == [event["id"]]
    assert the_event(fake_google)["start"] == event["start"] and again.ref == ref.ref

    await google.delete_hold(again)
    assert fake_google.send_updates[-1] == ("delete", event["id"], "none")
    assert fake_google.events(OWNER) == []


async def test_google_invites_the_guest_when_the_hold_names_them(fake_google, google) -> None:
    ref = await google.write_hold(hold(attendees=(GUEST,)))
    event = the_event(fake_google)
    [attendee] = event["attendees"]
    assert attendee["email"] == "sam@example.org"
    assert attendee["displayName"] == GUEST.name, "the name stays one JSON string"
    await google.move_hold(ref, hold(start=LATER, attendees=(GUEST,)))
    assert the_event(fake_google)["attendees"] == event["attendees"], "kept by the patch"
    await google.delete_hold(ref, notify=True)
    event_id = event["id"]
    assert fake_google.send_updates == [("insert", event_id, "all"), ("patch", event_id, "all"),
                                        ("delete", event_id, "all")]


async def test_a_google_move_restores_or_rewrites_a_hold_gone_upstream(fake_google,
                                                                      google) -> None:
    ref = await google.write_hold(hold())
    await google.delete_hold(ref)  # deleted upstream: Google keeps it as cancelled
    moved = await google.move_hold(ref, hold(start=LATER))
    event = the_event(fake_google)
    assert event["id"] == hold_event_id("bk_move1") and event["status"] == "tentative"
    assert event["start"]["dateTime"] == "2026-12-01T16:00:00Z" and moved.ref == ref.ref

    gone = HoldRef("bk_move2", f"{OWNER}/{hold_event_id('bk_move2')}")  # never existed: 404
    rewritten = await google.move_hold(gone, hold("bk_move2", start=LATER))
    assert rewritten.ref == gone.ref
    assert {e["id"] for e in fake_google.events(OWNER)} == {
        hold_event_id("bk_move1"), hold_event_id("bk_move2")}


# -- Microsoft Graph: the fake, with the real msal ----------------------------------------

direct = test_microsoft_as_documented.direct  # the adapter itself, signed in


def graph_items(changes: Any) -> dict[str, Any]:
    return google_items(changes)


async def test_a_graph_hold_moves_in_place_and_keeps_teams(fake_microsoft, direct) -> None:
    outlook = await direct(microsoft.WRITE_SCOPES)
    ref = await outlook.write_hold(hold(location=microsoft.TEAMS, attendees=(GUEST,)))
    [created] = fake_microsoft.events()
    join = created["onlineMeeting"]["joinUrl"]
    assert ref.video_link == join
    assert created["attendees"][0]["emailAddress"] == {"address": "sam@example.org",
                                                      "name": GUEST.name}
    assert created["attendees"][0]["type"] == "required"
    state = (await outlook.sync({})).state

    moved = await outlook.move_hold(ref, hold(start=LATER, title="Moved",
                                              location=microsoft.TEAMS, attendees=(GUEST,)))
    [event] = fake_microsoft.events()
    assert event["id"] == created["id"] and moved.ref == ref.ref, "PATCH keeps the event"
    assert event["subject"] == "Moved" and event["start"]["dateTime"].startswith(
        "2026-12-01T16:00:00")
    assert event["isOnlineMeeting"] and event["onlineMeeting"]["joinUrl"] == join
    assert moved.video_link == join and moved.etag == event["@odata.etag"]
    assert event["attendees"] == created["attendees"], "attendees kept"
    [(patched_id, body)] = fake_microsoft.patches
    assert patched_id == created["id"] and "body" not in body, "the Teams blob is left alone"
    assert [m[0] for m in fake_microsoft.meeting_messages] == ["request", "update"]
    assert all(m[2] == ("sam@example.org",) for m in fake_microsoft.meeting_messages)

    # The next delta round carries the new time, under the same key.
    [(key, item)] = graph_items(await outlook.sync(state)).items()
    assert key.endswith(created["id"]) and item["DTSTART"].dt == LATER

    await outlook.move_hold(moved, hold(start=LATER, title="Moved", location=microsoft.TEAMS))
    assert [e["id"] for e in fake_microsoft.events()] == [created["id"]], "moving again: one"

    await outlook.delete_hold(moved, notify=True)
    assert fake_microsoft.events() == []
    assert fake_microsoft.cancels == [(created["id"], microsoft.CANCEL_COMMENT)]
    assert fake_microsoft.meeting_messages[-1] == (
        "cancellation", created["id"], ("sam@example.org",), microsoft.CANCEL_COMMENT)


async def test_a_graph_hold_without_guests_is_deleted_and_rewritten_when_gone(
        fake_microsoft, direct) -> None:
    outlook = await direct(microsoft.WRITE_SCOPES)
    ref = await outlook.write_hold(hold(description="Booked.\nJoin: https://v.example/1"))
    [created] = fake_microsoft.events()
    assert created["attendees"] == [] and fake_microsoft.meeting_messages == []
    moved = await outlook.move_hold(ref, hold(start=LATER, description="Moved."))
    [event] = fake_microsoft.events()
    assert event["body"]["content"] == "Moved." and event["id"] == created["id"]
    assert moved.ref == ref.ref

    fake_microsoft.delete_event(created["id"])  # deleted upstream
    rewritten = await outlook.move_hold(moved, hold(start=LATER))
    [again] = fake_microsoft.events()
    assert again["id"] != created["id"] and rewritten.ref.endswith(again["id"])
    assert again["start"]["dateTime"].startswith("2026-12-01T16:00:00")

    await outlook.delete_hold(rewritten, notify=True)  # no attendees: a plain DELETE
    assert fake_microsoft.events() == [] and fake_microsoft.cancels == []
    assert ("DELETE", f"/v1.0/{rewritten.ref}", {}) in fake_microsoft.requests
