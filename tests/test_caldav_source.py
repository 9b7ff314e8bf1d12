"""CalDAV sources end to end against real servers (Radicale and Xandikos, see tests/peers.py).

Every scenario runs against both peers, the way users run fbproxy: a config
with a `kind = "caldav"` source, the app, sync rounds, and busy time read
back through the JSON API. Each test has its own user on the peer, so
discovery only ever finds that test's calendars.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from icalendar import vDuration

from server.sync.loop import SyncOutcome
from tests.conftest import NOW, event, ics
from tests.peers import Calendar, Peer, PeerPool, peer_for

AUTH = {"Authorization": "Bearer s3cret-s3cret-s3cret-0001"}
NOW_TS = int(NOW.timestamp())


@pytest.fixture(params=["radicale", "xandikos"])
def peer(request: pytest.FixtureRequest, peer_pool: PeerPool,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Peer]:
    yield from peer_for(peer_pool, request.param, request, monkeypatch)


def source(peer: Peer, url: str | None = None, **extra: Any) -> dict[str, Any]:
    tls = {"ca_file": peer.ca_file} if peer.ca_file else {}
    return {"name": "dav", "kind": "caldav", "url": url or peer.base_url,
            "username": peer.username, "password": peer.password, "poll_interval": "1m",
            **tls, **extra}


async def one_round(runtime: Any) -> SyncOutcome:
    [outcome] = await runtime.sync.run_all_once()
    return outcome


async def busy(client: Any, start: str = "2026-11-25", end: str = "2026-12-09") -> list[Any]:
    response = await client.get(f"/api/v1/freebusy?calendar=me&start={start}&end={end}",
                                headers=AUTH)
    assert response.status == 200, await response.text()
    body = await response.json()
    return [(b["start"], b["end"], b["status"]) for b in body["busy"]]


async def source_status(client: Any) -> dict[str, Any]:
    response = await client.get("/api/v1/freebusy?calendar=me", headers=AUTH)
    assert response.status == 200, await response.text()
    [status] = (await response.json())["sources"]
    return dict(status)


def block(day: int, start: str, end: str, status: str = "busy") -> tuple[str, str, str]:
    """A busy block on a day of the test month: block(26, "10:00", "11:00")."""
    month = "2026-11" if day >= 25 else "2026-12"
    return (f"{month}-{day:02d}T{start}:00Z", f"{month}-{day:02d}T{end}:00Z", status)


def put_events(peer: Peer, calendar: Calendar, **events: str) -> None:
    """Each keyword is one resource: name -> iCalendar text (stored as <name>.ics)."""
    for name, text in events.items():
        peer.put_event(calendar, f"{name}.ics", text)


A = ics(event("a", "20261126T100000Z", "20261126T110000Z"))
B = ics(event("b", "20261127T100000Z", "20261127T120000Z"))
B_MOVED = ics(event("b", "20261127T140000Z", "20261127T150000Z", "SEQUENCE:1"))
C = ics(event("c", "20261128T090000Z", "20261128T093000Z"))
D = ics(event("d", "20261130T080000Z", "20261130T083000Z"))
ABC_BUSY = [block(26, "10:00", "11:00"), block(27, "10:00", "12:00"), block(28, "09:00", "09:30")]


# -- initial sync and the three ways to point at calendars ---------------------

@pytest.mark.parametrize("pointing", ["root+displayname", "principal+href", "calendar-url"])
async def test_initial_sync_shows_every_event(peer: Peer, make_config, serve,
                                              pointing: str) -> None:
    work = peer.make_calendar("Work")
    home = peer.make_calendar("Home")
    put_events(peer, work, a=A, b=B, c=C)
    put_events(peer, home, d=D)
    config = {
        "root+displayname": source(peer, calendars=["Work"]),
        "principal+href": source(peer, peer.principal_url, calendars=[work.path]),
        "calendar-url": source(peer, work.url),
    }[pointing]
    client, runtime = await serve(make_config([config]))
    outcome = await one_round(runtime)
    assert outcome.ok, outcome.error
    assert outcome.fetched == 3 and outcome.expanded == 3 and outcome.items == 3
    assert not outcome.skipped
    assert await busy(client) == ABC_BUSY, "the Home calendar is not configured"


# -- incremental rounds --------------------------------------------------------

async def test_only_changes_are_fetched(peer: Peer, make_config, serve) -> None:
    work = peer.make_calendar("Work")
    put_events(peer, work, a=A, b=B, c=C)
    client, runtime = await serve(make_config([source(peer, calendars=["Work"])]))
    first = await one_round(runtime)
    assert first.ok and first.fetched == 3

    quiet = await one_round(runtime)
    assert quiet.ok and quiet.unchanged, quiet
    assert quiet.fetched == 0 and quiet.expanded == 0 and quiet.deleted == 0
    assert 1 <= quiet.requests <= 2, f"a quiet round cost {quiet.requests} requests"

    put_events(peer, work, d=D, b=B_MOVED)  # one added, one changed
    peer.delete_event(work, "c.ics")
    changed = await one_round(runtime)
    assert changed.ok and not changed.unchanged, changed
    assert changed.fetched == 2, "only the added and the changed item are downloaded"
    assert changed.expanded == 2 and changed.deleted == 1 and changed.items == 3
    assert await busy(client) == [
        block(26, "10:00", "11:00"), block(27, "14:00", "15:00"), block(30, "08:00", "08:30")]

    again = await one_round(runtime)
    assert again.ok and again.unchanged and again.fetched == 0 and again.requests <= 2


async def test_recurring_event_with_override_and_exdate(peer: Peer, make_config, serve) -> None:
    work = peer.make_calendar("Work")
    series = ics(
        event("daily", "20261126T090000Z", "20261126T100000Z",
              "RRULE:FREQ=DAILY;COUNT=5", "EXDATE:20261128T090000Z"),
        event("daily", "20261127T140000Z", "20261127T150000Z",
              "RECURRENCE-ID:20261127T090000Z", "SEQUENCE:1"))
    put_events(peer, work, daily=series)
    client, runtime = await serve(make_config([source(peer, work.url)]))
    outcome = await one_round(runtime)
    assert outcome.ok and outcome.fetched == 1 and not outcome.skipped, outcome
    assert await busy(client) == [
        block(26, "09:00", "10:00"),
        block(27, "14:00", "15:00"),  # moved by the override
        # the 28th is excluded
        block(29, "09:00", "10:00"),
        block(30, "09:00", "10:00"),
    ]
    # Cancel one more occurrence upstream: the whole resource is fetched again.
    cancelled = ics(
        event("daily", "20261126T090000Z", "20261126T100000Z",
              "RRULE:FREQ=DAILY;COUNT=5", "EXDATE:20261128T090000Z"),
        event("daily", "20261127T140000Z", "20261127T150000Z",
              "RECURRENCE-ID:20261127T090000Z", "SEQUENCE:1"),
        event("daily", "20261129T090000Z", "20261129T100000Z",
              "RECURRENCE-ID:20261129T090000Z", "STATUS:CANCELLED", "SEQUENCE:1"))
    put_events(peer, work, daily=cancelled)
    second = await one_round(runtime)
    assert second.ok and second.fetched == 1
    assert await busy(client) == [
        block(26, "09:00", "10:00"), block(27, "14:00", "15:00"), block(30, "09:00", "10:00")]


# -- a rejected sync token -----------------------------------------------------

async def test_invalid_token_forces_a_clean_full_resync(peer: Peer, make_config, serve) -> None:
    work = peer.make_calendar("Work")
    put_events(peer, work, a=A, b=B)
    client, runtime = await serve(make_config([source(peer, calendars=["Work"])]))
    assert (await one_round(runtime)).ok
    source_id = runtime.source_ids["dav"]
    state = (await runtime.store.source(source_id)).state
    corrupted = _replace_tokens(state, peer.bogus_sync_token)
    assert corrupted != state, f"no token found in the stored state {state!r}"
    await runtime.store.record_unchanged(source_id, state=corrupted, now=NOW_TS)
    # Change the calendar so the stale token must be used (and must not hide this).
    peer.delete_event(work, "b.ics")
    put_events(peer, work, c=C)

    resync = await one_round(runtime)
    assert resync.ok, resync.error
    assert resync.fetched == 2, "a full resync of the calendar downloads what is there"
    assert resync.items == 2
    assert await busy(client) == [block(26, "10:00", "11:00"), block(28, "09:00", "09:30")]
    fresh = (await runtime.store.source(source_id)).state
    assert peer.bogus_sync_token not in repr(fresh), "the rejected token must not be kept"
    quiet = await one_round(runtime)
    assert quiet.ok and quiet.unchanged and quiet.fetched == 0


def _replace_tokens(value: Any, token: str) -> Any:
    if isinstance(value, dict):
        return {k: token if k == "token" and v else _replace_tokens(v, token)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_tokens(v, token) for v in value]
    return value


# -- calendars come and go -----------------------------------------------------

async def test_calendars_added_and_deleted_upstream(peer: Peer, make_config, serve) -> None:
    # No `calendars` filter: everything the (per-test) user has is synced.
    first_cal = peer.make_calendar("One")
    second_cal = peer.make_calendar("Two")
    put_events(peer, first_cal, a=A)
    put_events(peer, second_cal, b=B, c=C)
    client, runtime = await serve(make_config([source(peer, peer.principal_url)]))
    assert (await one_round(runtime)).ok
    assert await busy(client) == ABC_BUSY

    third_cal = peer.make_calendar("Three")
    put_events(peer, third_cal, d=D)
    peer.delete_calendar(second_cal)
    outcome = await one_round(runtime)
    assert outcome.ok, outcome.error
    assert outcome.deleted == 2 and outcome.fetched == 1 and outcome.items == 2
    assert await busy(client) == [block(26, "10:00", "11:00"), block(30, "08:00", "08:30")]
    assert (await one_round(runtime)).unchanged


# -- failures ------------------------------------------------------------------

async def test_server_down_keeps_last_good_data_then_catches_up(peer: Peer, make_config,
                                                                serve) -> None:
    work = peer.make_calendar("Work")
    put_events(peer, work, a=A, b=B)
    client, runtime = await serve(make_config([source(peer, calendars=["Work"],
                                                      timeout="5s")]))
    assert (await one_round(runtime)).ok
    good = await busy(client)
    peer.stop()
    down = await one_round(runtime)
    assert not down.ok and down.error
    assert await busy(client) == good, "the last good data keeps serving"
    status = await source_status(client)
    assert status["stale"] is False and status["last_error"]
    assert status["needs_reauth"] is False
    record = (await runtime.store.sources())[0]
    assert record.consecutive_failures == 1 and not record.needs_reauth

    peer.start()
    put_events(peer, work, c=C)
    back = await one_round(runtime)
    assert back.ok, back.error
    assert back.fetched == 1, "after the outage only the change is downloaded"
    assert await busy(client) == ABC_BUSY
    assert (await source_status(client))["last_error"] is None


async def test_wrong_password_needs_reauth(peer: Peer, make_config, serve) -> None:
    work = peer.make_calendar("Work")
    put_events(peer, work, a=A)
    client, runtime = await serve(make_config([source(peer, calendars=["Work"])]))
    assert (await one_round(runtime)).ok
    peer.set_password("a new password")  # changed upstream, not in fbproxy's config
    refused = await one_round(runtime)
    assert not refused.ok and refused.error
    record = (await runtime.store.sources())[0]
    assert record.needs_reauth, record
    assert (await source_status(client))["needs_reauth"] is True
    assert await busy(client) == [block(26, "10:00", "11:00")]


async def test_wrong_password_from_the_start(peer: Peer, make_config, serve) -> None:
    config = source(peer, calendars=["Work"])
    config["password"] = "not the password"
    _, runtime = await serve(make_config([config]))
    outcome = await one_round(runtime)
    assert not outcome.ok
    assert (await runtime.store.sources())[0].needs_reauth


BROKEN = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//fbproxy tests//EN\r\nBEGIN:VEVENT\r\n"
          "UID:broken\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20261129T100000Z\r\n"
          "DTEND:garbage\r\nSUMMARY:x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
# Valid iCalendar that every server stores, but fbproxy refuses to expand.
REFUSED = ics(event("minutely", "20261129T100000Z", "20261129T100030Z",
                    "RRULE:FREQ=MINUTELY;COUNT=3"))


async def test_bad_items_are_skipped_and_named(peer: Peer, make_config, serve) -> None:
    work = peer.make_calendar("Work")
    put_events(peer, work, a=A, b=B, minutely=REFUSED)
    # Radicale refuses this PUT, so it is written into its storage directly;
    # Radicale then hides it from clients (skip_broken_item): only Xandikos serves it.
    peer.plant_broken_item(work, "broken.ics", BROKEN)
    listed = [href.rsplit("/", 1)[-1] for href in peer.hrefs(work)]
    assert ("broken.ics" in listed) == peer.server.serves_broken_items, listed
    client, runtime = await serve(make_config([source(peer, calendars=["Work"])]))
    outcome = await one_round(runtime)
    assert outcome.ok, outcome.error
    skipped = sorted(s.key.rsplit("/", 1)[-1] for s in outcome.skipped)
    expected = ["broken.ics", "minutely.ics"] if peer.server.serves_broken_items \
        else ["minutely.ics"]
    assert skipped == expected, outcome.skipped
    assert await busy(client) == [block(26, "10:00", "11:00"), block(27, "10:00", "12:00")]

    # Fixed upstream (same UID: a server may refuse a PUT that changes it).
    put_events(peer, work, minutely=ics(event("minutely", "20261128T090000Z",
                                              "20261128T093000Z")))
    fixed = await one_round(runtime)
    assert fixed.ok and fixed.fetched == 1 and not fixed.skipped, fixed
    assert await busy(client) == ABC_BUSY


# -- free/busy agrees with the server's own answer -----------------------------

MIX = {
    "single": ics(event("single", "20261126T100000Z", "20261126T113000Z")),
    "series": ics(
        event("series", "20261127T080000Z", "20261127T090000Z",
              "RRULE:FREQ=DAILY;COUNT=6", "EXDATE:20261129T080000Z"),
        event("series", "20261128T160000Z", "20261128T170000Z",
              "RECURRENCE-ID:20261128T080000Z", "SEQUENCE:1")),
    "tentative": ics(event("tentative", "20261201T130000Z", "20261201T140000Z",
                           "STATUS:TENTATIVE")),
    "transparent": ics(event("transparent", "20261202T090000Z", "20261202T100000Z",
                             "TRANSP:TRANSPARENT")),
    "cancelled": ics(event("cancelled", "20261203T090000Z", "20261203T100000Z",
                           "STATUS:CANCELLED")),
    "allday": ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//fbproxy tests//EN\r\n"
               "BEGIN:VEVENT\r\nUID:allday\r\nDTSTAMP:20260101T000000Z\r\n"
               "DTSTART;VALUE=DATE:20261204\r\nDTEND;VALUE=DATE:20261205\r\n"
               "SUMMARY:Off\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"),
    "overlap": ics(event("overlap", "20261126T110000Z", "20261126T120000Z")),
    # 15:00 in Berlin (UTC+1 in December) for 45 minutes: 14:00-14:45Z.
    "zoned": ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//fbproxy tests//EN\r\n"
              "BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\n"
              "BEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n"
              "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nTZOFFSETFROM:+0200\r\n"
              "TZOFFSETTO:+0100\r\nEND:STANDARD\r\n"
              "BEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\n"
              "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nTZOFFSETFROM:+0100\r\n"
              "TZOFFSETTO:+0200\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n"
              "BEGIN:VEVENT\r\nUID:zoned\r\nDTSTAMP:20260101T000000Z\r\n"
              "DTSTART;TZID=Europe/Berlin:20261203T150000\r\nDURATION:PT45M\r\n"
              "SUMMARY:x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"),
}


async def test_busy_time_matches_the_servers_free_busy_report(peer: Peer, make_config,
                                                              serve) -> None:
    work = peer.make_calendar("Work")
    put_events(peer, work, **MIX)
    client, runtime = await serve(make_config([source(peer, work.url)]))
    assert (await one_round(runtime)).ok
    ours = await busy(client, "2026-11-25", "2026-12-09")
    report = peer.free_busy(work, "20261125T000000Z", "20261209T000000Z")
    theirs = _freebusy_periods(report)
    # RFC 4791 §7.10 and fbproxy agree: OPAQUE (CONFIRMED or no STATUS) is BUSY,
    # TENTATIVE is BUSY-TENTATIVE, TRANSPARENT and CANCELLED block nothing.
    # How the servers write it differs, and is normalised here:
    # - Radicale merges overlapping periods and lists a CANCELLED event as
    #   FBTYPE=FREE (ignored here: free time is what is not listed);
    # - Xandikos neither merges nor sorts, and leaves out FBTYPE for BUSY (the
    #   RFC 5545 default).
    # fbproxy lets BUSY win where it overlaps BUSY-TENTATIVE; the mix has no such
    # overlap, so the tentative periods compare directly.
    assert len(_union(theirs.get("BUSY", []))) == 8, report
    assert _spans(ours, "busy") == _union(theirs.get("BUSY", [])), report
    assert _spans(ours, "tentative") == _union(theirs.get("BUSY-TENTATIVE", [])), report


def _spans(blocks: list[tuple[str, str, str]], status: str) -> list[tuple[datetime, datetime]]:
    return [(datetime.fromisoformat(s), datetime.fromisoformat(e))
            for s, e, st in blocks if st == status]


def _union(spans: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _freebusy_periods(text: str) -> dict[str, list[tuple[datetime, datetime]]]:
    """FBTYPE -> periods of the VFREEBUSY in a free-busy-query answer (UTC)."""
    unfolded = re.sub(r"\r?\n[ \t]", "", text)
    found: dict[str, list[tuple[datetime, datetime]]] = {}
    for line in unfolded.splitlines():
        name, _, value = line.partition(":")
        head, *params = name.split(";")
        if head.upper() != "FREEBUSY":
            continue
        fbtype = "BUSY"
        for param in params:
            key, _, param_value = param.partition("=")
            if key.upper() == "FBTYPE":
                fbtype = param_value.upper()
        for period in value.split(","):
            start_text, _, end_text = period.partition("/")
            start = _utc(start_text)
            end = start + vDuration.from_ical(end_text) if end_text.startswith(("P", "+P")) \
                else _utc(end_text)
            found.setdefault(fbtype, []).append((start, end))
    return found


def _utc(text: str) -> datetime:
    return datetime.strptime(text.strip(), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)

