"""Google recurring series read as series: the same busy time as the calendar's ICS export.

A Google calendar and an ICS file holding the same events (the file built with
icalendar) are synced by one app, each as its own calendar; the JSON API must
answer the same busy intervals for both after a full sync, incremental changes
(the master, a new exception) and a resync after a 410.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar, Event

from tests.conftest import NOW
from tests.fake_google import FakeGoogle
from tests.test_google_source import OWNER, source


@pytest.fixture
def expansion_workers() -> int:
    """This module's configs expand in worker processes (see tests/conftest.py)."""
    return 2


BERLIN = ZoneInfo("Europe/Berlin")
G_SECRET = "s3cret-s3cret-s3cret-000g"
I_SECRET = "s3cret-s3cret-s3cret-000i"
SERIES = "weekly1"


def tuesday_after(moment: datetime, weeks: int) -> datetime:
    """10:00 Berlin on the Tuesday ``weeks`` weeks after the one following ``moment``."""
    day = moment.astimezone(BERLIN).date()
    day += timedelta(days=(1 - day.weekday()) % 7 or 7)
    return datetime(day.year, day.month, day.day, 10, tzinfo=BERLIN) + timedelta(weeks=weeks)


FIRST = tuesday_after(NOW - timedelta(days=60), 0)  # a series begun weeks ago, never ending
MOVED = tuesday_after(NOW, 1)
CANCELLED = tuesday_after(NOW, 2)
NEW_EXCEPTION = tuesday_after(NOW, 3)
LATER_CANCELLED = tuesday_after(NOW, 5)


def g_time(moment: datetime) -> dict[str, str]:
    return {"dateTime": moment.isoformat(), "timeZone": "Europe/Berlin"}


class World:
    """The same calendar kept twice: in the Google fake and as an ICS file."""

    def __init__(self, google: FakeGoogle, path: Path) -> None:
        self.google, self.path = google, path
        self.length = timedelta(hours=1)
        self.moves: dict[datetime, tuple[datetime, datetime]] = {}
        self.cancelled: list[datetime] = []

    def master(self) -> None:
        self.google.put_event(OWNER, {
            "id": SERIES, "summary": "Weekly", "start": g_time(FIRST),
            "end": g_time(FIRST + self.length), "recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=TU"]})

    def move(self, original: datetime, start: datetime, end: datetime) -> None:
        self.moves[original] = (start, end)
        self.google.put_exception(OWNER, SERIES, g_time(original), start=g_time(start),
                                  end=g_time(end))

    def cancel(self, original: datetime) -> None:
        self.cancelled.append(original)
        self.google.cancel_occurrence(OWNER, SERIES, g_time(original))

    def write_ics(self) -> None:
        calendar = Calendar()
        calendar.add("PRODID", "-//fbproxy tests//EN")
        calendar.add("VERSION", "2.0")
        master = Event()
        master.add("UID", "weekly1@example.org")
        master.add("DTSTAMP", NOW)
        master.add("DTSTART", FIRST)
        master.add("DTEND", FIRST + self.length)
        master.add("RRULE", {"FREQ": "WEEKLY", "BYDAY": "TU"})
        for original in self.cancelled:
            master.add("EXDATE", original)
        calendar.add_component(master)
        for original, (start, end) in self.moves.items():
            override = Event()
            override.add("UID", "weekly1@example.org")
            override.add("DTSTAMP", NOW)
            override.add("RECURRENCE-ID", original)
            override.add("DTSTART", start)
            override.add("DTEND", end)
            calendar.add_component(override)
        before = self.path.stat().st_mtime_ns if self.path.exists() else 0
        self.path.write_bytes(calendar.to_ical())
        # A new mtime even within one clock tick: the file source skips an unchanged one.
        os.utime(self.path, ns=(before + 10**9, before + 10**9))


async def busy(client: Any, secret: str) -> list[tuple[str, str, str]]:
    start = NOW.date().isoformat()
    end = (NOW + timedelta(days=56)).date().isoformat()
    response = await client.get(f"/api/v1/freebusy?start={start}&end={end}",
                                headers={"Authorization": f"Bearer {secret}"})
    assert response.status == 200, await response.text()
    return [(b["start"], b["end"], b["status"]) for b in (await response.json())["busy"]]


async def test_a_series_syncs_like_its_ics_export(fake_google, tmp_path, make_config,
                                                  serve) -> None:
    fake_google.add_calendar(OWNER, "Alex", primary=True, time_zone="Europe/Berlin")
    world = World(fake_google, tmp_path / "export.ics")
    world.master()
    world.move(MOVED, MOVED + timedelta(days=1, hours=4), MOVED + timedelta(days=1, hours=5))
    world.cancel(CANCELLED)
    world.write_ics()
    config = make_config(
        [source(fake_google, tmp_path), {"name": "i", "kind": "ics", "url": str(world.path)}],
        calendars=[{"name": "g", "sources": ["g"], "secret": G_SECRET},
                   {"name": "i", "sources": ["i"], "secret": I_SECRET}])
    client, runtime = await serve(config)

    async def same() -> list[tuple[str, str, str]]:
        outcomes = await runtime.sync.run_all_once()
        assert all(o.ok for o in outcomes), outcomes
        from_google = await busy(client, G_SECRET)
        assert from_google == await busy(client, I_SECRET)
        return from_google

    blocks = await same()  # full sync
    assert len(blocks) == 7, blocks  # eight Tuesdays, one occurrence moved, one cancelled
    assert (MOVED + timedelta(days=1, hours=4)).astimezone(ZoneInfo("UTC")).isoformat() \
        .replace("+00:00", "Z") in {b[0] for b in blocks}
    lists = [q for m, p, q in fake_google.requests if p.endswith("/events")]
    assert len(lists) == 1 and lists[0]["singleEvents"] == "false", "series come as series"
    [stored] = [k for k in await runtime.store.item_hashes(runtime.source_ids["g"])]
    assert stored == f"primary/{SERIES}", "one item for the series and its exceptions"

    fake_google.requests.clear()
    world.length = timedelta(minutes=90)  # the master changes
    world.master()
    world.move(NEW_EXCEPTION, NEW_EXCEPTION + timedelta(hours=6),
               NEW_EXCEPTION + timedelta(hours=7))  # a new exception
    world.write_ics()
    blocks = await same()  # incremental
    assert [q.get("syncToken") is not None for _m, _p, q in fake_google.requests] == [True]
    assert sum(b[1] == (MOVED + timedelta(days=1, hours=5)).astimezone(ZoneInfo("UTC"))
               .isoformat().replace("+00:00", "Z") for b in blocks) == 1

    world.move(MOVED, MOVED + timedelta(hours=2), MOVED + timedelta(hours=3))
    world.write_ics()
    await same()  # an exception changing alone updates its series

    fake_google.expire_sync_tokens()
    world.cancel(LATER_CANCELLED)
    world.write_ics()
    fake_google.requests.clear()
    await same()  # a 410, then a full resync
    assert [q.get("syncToken") is not None for _m, _p, q in fake_google.requests] == \
        [True, False]


async def test_all_day_declined_and_orphan_series_and_a_deleted_master(
        fake_google, tmp_path, make_config, serve) -> None:
    fake_google.add_calendar(OWNER, "Alex", primary=True, time_zone="Europe/Berlin")
    friday = (NOW + timedelta(days=(4 - NOW.weekday()) % 7)).date()
    fake_google.put_event(OWNER, {
        "id": "allday1", "start": {"date": friday.isoformat()},
        "end": {"date": (friday + timedelta(days=1)).isoformat()},
        "recurrence": [f"RRULE:FREQ=WEEKLY;UNTIL={(friday + timedelta(weeks=2)):%Y%m%d}"]})
    tuesday = tuesday_after(NOW, 0)
    fake_google.put_event(OWNER, {
        "id": "declined1", "start": g_time(tuesday), "end": g_time(tuesday + timedelta(hours=1)),
        "recurrence": ["RRULE:FREQ=DAILY"],
        "attendees": [{"email": OWNER, "self": True, "responseStatus": "declined"}]})
    fake_google.put_event(OWNER, {
        "id": "free1", "start": g_time(tuesday), "end": g_time(tuesday + timedelta(hours=3)),
        "recurrence": ["RRULE:FREQ=DAILY"], "transparency": "transparent"})
    fake_google.put_event(OWNER, {  # one occurrence of a series this calendar does not show
        "id": "elsewhere_20261203T150000Z", "recurringEventId": "elsewhere",
        "originalStartTime": {"dateTime": "2026-12-03T15:00:00Z"},
        "start": {"dateTime": "2026-12-03T15:00:00Z"}, "end": {"dateTime": "2026-12-03T16:00:00Z"}})
    client, runtime = await serve(make_config(
        [source(fake_google, tmp_path)],
        calendars=[{"name": "g", "sources": ["g"], "secret": G_SECRET}]))
    [outcome] = await runtime.sync.run_all_once()
    assert outcome.ok, outcome
    midnight = datetime(friday.year, friday.month, friday.day, tzinfo=BERLIN)
    days = [(midnight + timedelta(weeks=w)).astimezone(ZoneInfo("UTC")) for w in range(3)]
    z = "%Y-%m-%dT%H:%M:%SZ"
    expected = [(d.strftime(z), (d + timedelta(days=1)).strftime(z), "busy") for d in days]
    expected.append(("2026-12-03T15:00:00Z", "2026-12-03T16:00:00Z", "busy"))
    assert await busy(client, G_SECRET) == sorted(expected), \
        "all-day days begin at the calendar's midnight; UNTIL's day is included"

    fake_google.cancel_event(OWNER, "allday1")
    [outcome] = await runtime.sync.run_all_once()
    assert outcome.ok, outcome
    assert await busy(client, G_SECRET) == [expected[-1]]
    [record] = await runtime.store.sources()
    series = record.state["calendars"]["primary"]["series"]
    assert set(series) == {"declined1", "free1"}, "a deleted series leaves the state"
    assert "Private" not in str(record.state) and "summary" not in str(record.state)


async def test_a_state_from_single_instance_listings_syncs_in_full(
        fake_google, tmp_path, make_config, serve) -> None:
    fake_google.add_calendar(OWNER, "Alex", primary=True)
    client, runtime = await serve(make_config([source(fake_google, tmp_path)]))
    [outcome] = await runtime.sync.run_all_once()
    assert outcome.ok
    [record] = await runtime.store.sources()
    token = record.state["calendars"]["primary"]["sync_token"]
    older = {"calendars": {"primary": {"sync_token": token, "time_zone": "UTC"}}}
    fake_google.requests.clear()
    changes = await runtime.sync.syncers["g"].adapter.sync(older)
    assert changes.full_scopes == ("primary/",), "instance items of before are replaced"
    [(_m, _p, query)] = fake_google.requests
    assert "syncToken" not in query
